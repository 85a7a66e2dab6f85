"""The pipeline's nouns, from big to small, and the one that every stage passes around.

block    a piece of an input's audio read at once (30 s to 4 min): its log-mel and speech
stream   one block decoded in order, each window prompted with the text before it
window   up to 30 s of a stream's log-mel: what the encoder sees at once (``Window``)
row      a window in a batch, with its prompt and language (``runtime.pipeline.runner.Row``)
segment  a timed piece of text cut from a decoded window (``runtime.output.results.Segment``)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from runtime.audio.constants import FRAMES_PER_SECOND


@dataclass
class Window:
    """One window to decode: a span of a block's log-mel, and the speech the VAD heard in it."""

    mel: Any
    start_frame: int  # within ``mel``
    n_frames: int
    offset_s: float  # absolute time of the block's frame 0
    speech: list[tuple[int, int]] = field(default_factory=list)  # VAD regions, frames in mel

    @property
    def start_s(self) -> float:
        return self.offset_s + self.start_frame / FRAMES_PER_SECOND

    @property
    def end_s(self) -> float:
        return self.start_s + self.n_frames / FRAMES_PER_SECOND


class Stopwatch:
    """Seconds spent per stage, summed (thread-safe: stages may run in a preparing thread)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        with self._lock:
            self.totals[stage] = self.totals.get(stage, 0.0) + now - since
        return now

    def merged(self, *others: Stopwatch) -> dict[str, float]:
        """This stopwatch's totals plus the others' (an input's stages and its batches')."""
        totals = dict(self.totals)
        for other in others:
            for stage, seconds in other.totals.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
        return totals
