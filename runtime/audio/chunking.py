"""Cut audio into chunks of at most 30 s for the batcher, in silences rather than through words.

Speech regions from the VAD are merged while the merged span fits in one window; a region
longer than a window is split at its least likely speech frame. ``fixed`` chunking (plain 30 s
windows) is there for comparison: it is what loses words at the cuts in other batched runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.audio.constants import N_SAMPLES
from runtime.audio.vad import FRAME


@dataclass(frozen=True)
class Chunk:
    start: int  # sample offsets, end exclusive
    end: int

    @property
    def samples(self) -> int:
        return self.end - self.start


def split_long(start: int, end: int, probs: np.ndarray, max_samples: int) -> list[tuple[int, int]]:
    """Split [start, end) into pieces <= max_samples, each cut at the least likely speech frame
    in the second half of the allowed span (so pieces are not needlessly short)."""
    pieces = []
    while end - start > max_samples:
        lo = (start + max_samples // 2) // FRAME
        hi = (start + max_samples) // FRAME
        window = probs[lo:hi]
        cut = (lo + int(np.argmin(window))) * FRAME if len(window) else start + max_samples
        cut = min(max(cut, start + FRAME), start + max_samples)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def vad_chunks(
    regions: list[tuple[int, int]], probs: np.ndarray, max_samples: int = N_SAMPLES
) -> list[Chunk]:
    """Merge speech regions into chunks no longer than ``max_samples``."""
    pieces = [p for s, e in regions for p in split_long(s, e, probs, max_samples)]
    chunks: list[Chunk] = []
    for s, e in pieces:
        if chunks and e - chunks[-1].start <= max_samples:
            chunks[-1] = Chunk(chunks[-1].start, e)
        else:
            chunks.append(Chunk(s, e))
    return chunks


def fixed_chunks(n_samples: int, max_samples: int = N_SAMPLES) -> list[Chunk]:
    return [Chunk(s, min(s + max_samples, n_samples)) for s in range(0, n_samples, max_samples)]
