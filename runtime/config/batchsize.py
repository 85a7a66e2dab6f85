"""How many rows a batch may hold on this machine: the profile's (or the default) batch size,
within the profile's floor and ceiling, and no more rows than half the memory available can
hold. A row's decoder state (cross-attention keys and values for its window, self-attention
caches, its features) grows with the model: 26 MB for tiny.en, 0.65 GB for large-v3, so the 8
rows that suit tiny.en on any laptop would take 5 GB with large-v3.

Measured on the project's 2-core AMD EPYC with tiny.en int8 (``tools/bench_batch_sizes.py``): a
decoder step costs 2.8-3.9 ms per row alone, 1.7 at 4 rows, 1.5 at 6-8 and 1.3 at 12-16; end to
end on the 15.5-min chapter 8 rows beat 12 (15.2-15.3 s against 15.8-15.9 s, WER 7.22% against
8.30%: more rows also mean more, shorter streams with less text before each window). So the
speed of a step alone does not choose the batch; the profile's size stays, and memory caps it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MEMORY_SHARE = 0.5  # of the memory available when the batch is chosen, for the rows' state
FLOAT_BYTES = 4


@dataclass(frozen=True)
class BatchFit:
    size: int
    reason: str | None = None  # why it is not the size asked for (None: it is)


def row_bytes(dims) -> int:
    """Host memory one decoding row holds in float32: per decoder layer the keys and values of
    the window (n_audio_ctx columns) and of its text (n_text_ctx), and the window's features
    (held while the row joins, and while it decodes when its words are aligned)."""
    per_layer = 2 * (dims.n_audio_ctx + dims.n_text_ctx) * dims.n_text_state
    return FLOAT_BYTES * (dims.n_text_layer * per_layer + dims.n_audio_ctx * dims.n_audio_state)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``, else free pages); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fit_batch(
    size: int,
    row: int,
    available: int | None,
    floor: int | None = None,
    ceiling: int | None = None,
) -> BatchFit:
    """``size`` within ``floor``..``ceiling``, lowered (not under the floor, nor under 1) to the
    rows ``MEMORY_SHARE`` of ``available`` bytes holds at ``row`` bytes each."""
    low = floor or 1
    high = ceiling or max(size, low)
    fitted, reason = min(max(size, low), high), None
    if fitted != size:
        reason = f"the profile's {'floor' if fitted > size else 'ceiling'} of {fitted}"
    if available is not None and row > 0:
        room = int(available * MEMORY_SHARE) // row
        if room < fitted:
            fitted = max(room, low, 1)
            reason = (
                f"{available / 2**30:.1f} GiB available holds {room} rows of "
                f"{row / 2**20:.0f} MB at {MEMORY_SHARE:.0%}"
            )
    return BatchFit(fitted, reason)


class BatchingConfig(BaseModel):
    """A profile's ``[batcher]`` table: windows per batch, decoder steps batched or not (unset:
    the runtime's defaults, ``runtime.pipeline.options.BatchOptions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    batch_size: int | None = Field(default=None, ge=1, description="Windows per batch.")
    min_batch_size: int | None = Field(default=None, ge=1, description="Floor on the batch.")
    max_batch_size: int | None = Field(default=None, ge=1, description="Ceiling on the batch.")
    decoder: Literal["continuous", "batched", "sequential"] | None = Field(
        default=None,
        description="'sequential' forces one window at a time even where a backend can batch.",
    )

    @model_validator(mode="after")
    def _floor_under_ceiling(self) -> BatchingConfig:
        if (self.min_batch_size or 0) > (self.max_batch_size or self.min_batch_size or 0):
            raise ValueError("min_batch_size is above max_batch_size")
        return self
