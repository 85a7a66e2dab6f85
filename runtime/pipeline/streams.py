"""An input's audio as streams: a block of speech pieces decoded window after window, each
window prompted with the stream's text so far (``Stream``), as the sequential path decodes a
file. At an input's end, a stream with much speech left can give its later part to a new stream
(``Stream.split``), so rows that would sit idle decode it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.audio.constants import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE
from runtime.output.results import Segment
from runtime.pipeline.window import Window

MIN_WINDOW_SAMPLES = 1600  # speech left after a seek shorter than 0.1 s holds no word
# a split gives a new stream at least this much speech (and costs it the text before as prompt)
MIN_SPLIT_SAMPLES = 10 * SAMPLE_RATE


@dataclass
class Block:
    """A block of audio, prepared: its log-mel, and the speech in it as pieces of at most 30 s
    (VAD regions split at their least likely frame; the block's last chunk is left to the next
    block, so no window is cut at a block's edge)."""

    mel: Any
    offset_s: float  # absolute time of the mel's frame 0
    pieces: list[tuple[int, int]]  # samples within the block, in order
    regions: list[tuple[int, int]]  # VAD speech regions (samples), for coverage checks


@dataclass(eq=False)  # streams are compared by identity (their blocks hold arrays)
class Stream:
    """One block decoded as the sequential path decodes a file: a window from ``cursor`` to the
    last silence that keeps it within 30 s, then the next window from where the text ended
    (Whisper's seek), each prompted with the text the stream decoded so far. Speech from
    ``stop`` on belongs to a later stream split off this one."""

    block: Block
    history: list[int]
    cursor: int = 0  # samples of the block before it are done
    busy: bool = False  # a window of it is being decoded: its next one depends on the result
    segments: list[Segment] = field(default_factory=list)  # its text so far, in order
    released: int = 0  # of ``segments``, how many were handed to ``on_segments``
    stop: int | None = None  # samples of the block from here on are another stream's

    def pieces(self) -> list[tuple[int, int]]:
        """The speech pieces left to it (samples of the block), the first cut at the cursor."""
        return [
            (max(s, self.cursor), e)
            for s, e in self.block.pieces
            if e - max(s, self.cursor) >= MIN_WINDOW_SAMPLES
            and (self.stop is None or s < self.stop)
        ]

    def next_window(self) -> Window | None:
        pieces = self.pieces()
        if not pieces:
            return None
        start, end = pieces[0][0], _window_end(pieces)
        speech = [
            (max(s, start) // HOP_LENGTH, min(e, end) // HOP_LENGTH)
            for s, e in self.block.regions
            if s < end and e > start
        ]
        return Window(
            self.block.mel,
            start // HOP_LENGTH,
            -(-(end - start) // HOP_LENGTH),
            self.block.offset_s,
            speech,
        )

    @property
    def has_work(self) -> bool:
        return bool(self.pieces())

    def later_speech(self) -> int:
        """Samples of speech after its next window (or the one being decoded): what a split
        could give away."""
        pieces = self.pieces()
        end = _window_end(pieces) if pieces else 0
        return sum(e - s for s, e in pieces if s >= end)

    def split(self, history: list[int]) -> Stream | None:
        """A new stream (prompted with ``history``) for the later part of this one's speech
        after its next window, cut at a piece's start so the two have about equal speech; None
        when that would give it less than ``MIN_SPLIT_SAMPLES``."""
        pieces = self.pieces()
        if not pieces or self.later_speech() < MIN_SPLIT_SAMPLES:
            return None
        first_end = _window_end(pieces)
        later = [(s, e) for s, e in pieces if s >= first_end]
        total = sum(e - s for s, e in pieces)
        mine = total - sum(e - s for s, e in later)  # the window in hand stays here
        best, at = abs(total - 2 * mine), later[0][0]
        for (s0, e0), (s1, _) in zip(later, later[1:]):
            mine += e0 - s0  # that piece stays here too
            if total - mine < MIN_SPLIT_SAMPLES:
                break
            if abs(total - 2 * mine) < best:
                best, at = abs(total - 2 * mine), s1
        child = Stream(self.block, list(history), cursor=at, stop=self.stop)
        self.stop = at
        return child


def _window_end(pieces: list[tuple[int, int]]) -> int:
    """Where the window from the first piece ends: the last piece end within 30 s of its start."""
    start, end = pieces[0]
    for _, e in pieces[1:]:
        if e - start > N_SAMPLES:
            break
        end = e
    return end
