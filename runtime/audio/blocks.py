"""Audio as consecutive blocks, decoded and resampled as a stream: a two-hour file costs a block
of memory, not the whole signal (``runtime.pipeline.source`` reads inputs this way)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from runtime.audio.constants import SAMPLE_RATE
from runtime.audio.decode import AudioSource, array_to_mono, resampled_chunks


def iter_audio_blocks(
    source: AudioSource,
    block_seconds: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    *,
    allow_truncated: bool = False,
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono blocks of exactly `block_seconds` (the last one shorter).

    Decoding and resampling are streamed, so a two-hour file costs a block of memory, not the
    whole signal. The blocks concatenated equal load_audio(source). A truncated file raises
    AudioError only at its end, after the blocks that could be decoded (unless `allow_truncated`).
    """
    for block, _ in iter_audio_blocks_flagged(
        source, block_seconds, sample_rate, allow_truncated=allow_truncated
    ):
        yield block


def iter_audio_blocks_flagged(
    source: AudioSource,
    block_seconds: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    *,
    allow_truncated: bool = False,
) -> Iterator[tuple[np.ndarray, bool]]:
    """``iter_audio_blocks``, each block with whether it is the last: known by decoding one more
    chunk (a packet's samples), not by holding the next block (for 4-minute blocks, 15 MB)."""
    block = int(round(block_seconds * sample_rate))
    if block <= 0:
        raise ValueError(f"block_seconds must give at least one sample, got {block_seconds}")
    chunks = (
        iter([array_to_mono(source)])
        if isinstance(source, np.ndarray)
        else resampled_chunks(source, sample_rate, allow_truncated)
    )
    out: np.ndarray | None = None  # chunks are copied in once, no joins
    filled, error = 0, None
    chunk = next(chunks, None)
    while chunk is not None:
        if out is None:
            out = np.empty(block, dtype=np.float32)
        n = min(block - filled, len(chunk))
        out[filled : filled + n] = chunk[:n]
        filled, chunk = filled + n, chunk[n:]
        while chunk is not None and not len(chunk):  # this chunk is spent: the next one
            try:
                chunk = next(chunks, None)
            except Exception as exc:  # noqa: BLE001 - a truncated end: raised after the blocks
                chunk, error = None, exc
        if filled == block:
            held, out, filled = [out], None, 0  # the caller holds the only reference
            yield held.pop(), chunk is None
    if out is not None and filled:
        yield out[:filled].copy(), True
    if error is not None:
        raise error
