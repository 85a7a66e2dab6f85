"""Turns in a live stream: where speech starts, pauses, resumes and stops, frame by frame from
Silero's probabilities, and the audio held for the turns (``AudioBuffer``).

The detector uses the offline VAD's hysteresis (``runtime.audio.vad.speech_regions``): speech
starts at a frame at or above ``threshold``; it pauses at the first frame below
``threshold - 0.15`` and a frame at or above that resumes it. So where a live turn's speech
ends is where the offline VAD of the same audio says its region ends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from runtime.audio.constants import SAMPLE_RATE
from runtime.audio.silero import FRAME
from runtime.live.options import LiveOptions, TurnDetection

FRAME_MS = 1000 * FRAME / SAMPLE_RATE  # 32 ms per Silero frame


@dataclass(frozen=True)
class Boundary:
    """One change in a stream's speech, in samples of the stream.

    kind: "start" (speech began at ``at``), "pause" (``final_tail_ms`` of silence after speech
    that ended at ``speech_end``: time to decode the final), "resume" (speech again before the
    silence was long enough), "stop" (the silence is long enough: the turn is over), "cut" (the
    turn is too long: it ends at ``at`` and the next begins there)."""

    kind: str
    at: int
    speech_end: int | None = None


class TurnDetector:
    """Turn boundaries from per-frame speech probabilities (``push`` them as they come)."""

    def __init__(self, turns: TurnDetection, options: LiveOptions) -> None:
        self.threshold = turns.threshold
        self.neg = max(turns.threshold - 0.15, 0.01)
        self.silence_frames = max(1, round(turns.silence_duration_ms / FRAME_MS))
        self.tail_frames = min(self.silence_frames, max(1, round(options.final_tail_ms / FRAME_MS)))
        self.max_frames = round(options.max_turn_s * SAMPLE_RATE / FRAME)
        self.search_frames = round(options.cut_search_s * SAMPLE_RATE / FRAME)
        self.frame = 0  # frames seen
        self.speaking = False
        self.quiet = 0  # frames below ``neg`` since the speech paused
        self._turn_start = 0  # frame
        self._probs: list[float] = []  # of the turn, for choosing a cut

    def reset(self) -> None:
        """Forget the turn in progress (it was committed by hand)."""
        self.speaking, self.quiet, self._probs = False, 0, []

    def push(self, probs: np.ndarray) -> list[Boundary]:
        found: list[Boundary] = []
        for p in probs.tolist():
            self.frame += 1
            if not self.speaking:
                if p >= self.threshold:
                    self.speaking, self.quiet = True, 0
                    self._turn_start, self._probs = self.frame - 1, [p]
                    found.append(Boundary("start", (self.frame - 1) * FRAME))
                continue
            self._probs.append(p)
            found += self._in_speech(p)
        return found

    def _in_speech(self, p: float) -> list[Boundary]:
        at = self.frame * FRAME
        if p < self.neg:
            self.quiet += 1
            speech_end = (self.frame - self.quiet) * FRAME
            if self.quiet == self.silence_frames:
                self.reset()
                return [Boundary("stop", at, speech_end)]
            if self.quiet == self.tail_frames:
                return [Boundary("pause", at, speech_end)]
            return []
        resumed = self.quiet >= self.tail_frames
        self.quiet = 0
        if self.frame - self._turn_start >= self.max_frames:
            return [self._cut()]
        return [Boundary("resume", at)] if resumed else []

    def _cut(self) -> Boundary:
        """End the turn at its least likely frame among the last ``cut_search_s`` (the latest
        of equals), and begin the next there."""
        recent = np.asarray(self._probs[-self.search_frames :])
        offset = len(recent) - 1 - int(np.argmin(recent[::-1]))
        cut = self.frame - len(recent) + offset + 1  # the turn ends after that frame
        self._turn_start, self._probs = cut, self._probs[len(self._probs) - (self.frame - cut) :]
        return Boundary("cut", cut * FRAME)


class AudioBuffer:
    """A stream's recent audio as the pieces it came in, by absolute sample position; pieces
    wholly before what is still needed are dropped."""

    def __init__(self) -> None:
        self._pieces: deque[np.ndarray] = deque()
        self.start = 0  # sample position of the first piece held
        self.end = 0  # samples appended in all

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._pieces.append(samples)
            self.end += len(samples)

    def slice(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) (clipped to what is held)."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, np.float32)
        out, pos = [], self.start
        for piece in self._pieces:
            lo, hi = max(start - pos, 0), min(end - pos, len(piece))
            if lo < hi:
                out.append(piece[lo:hi])
            pos += len(piece)
            if pos >= end:
                break
        return np.concatenate(out)

    def drop_before(self, position: int) -> None:
        while self._pieces and self.start + len(self._pieces[0]) <= position:
            self.start += len(self._pieces.popleft())
