"""One live stream over an ``Engine``: audio in, turn events and text out (see the package doc).

The owner (one thread) calls ``append``, ``commit``, ``clear`` and ``close``; decodes finish on
the engine's worker thread, so every event goes out through ``emit`` under the session's lock,
and ``emit`` must be safe to call from any thread (the server hops to its event loop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.audio.constants import SAMPLE_RATE
from runtime.audio.silero import SileroStream, SileroVad
from runtime.live import events as ev
from runtime.live.agreement import LocalAgreement
from runtime.live.options import LiveOptions
from runtime.live.turns import AudioBuffer, Boundary, TurnDetector
from runtime.pipeline.options import Priority

log = logging.getLogger(__name__)

MIN_COMMIT_S = 0.1  # OpenAI refuses a commit of less than 100 ms
Emit = Callable[[ev.Event], None]
# Decode results are handled here, not in the engine's worker: its futures resolve while it
# holds its lock, and a session holding its own lock may be submitting to the engine.
_RESULTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-results")


class PartialBudget:
    """Partial decodes in flight on one engine, across its live sessions: partials are a
    convenience and finals are not, so beyond ``max_in_flight`` a session skips its partial
    (and tries again with its next audio) rather than queue work that would delay finals."""

    def __init__(self, max_in_flight: int = 1) -> None:
        self.max_in_flight = max_in_flight
        self._futures: set[Future] = set()
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def acquire(self) -> bool:
        with self._lock:
            return len(self._futures) < self.max_in_flight

    def track(self, future: Future) -> None:
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._release)

    def _release(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def preempt(self) -> None:
        """A final was submitted: the partials in flight give way (a continuous runner drops
        their rows at its next step; a session re-decodes later)."""
        with self._lock:
            futures = list(self._futures)
        for future in futures:
            future.cancel()


def ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


@dataclass
class Turn:
    """A turn being spoken or decoded: its audio span and its text so far."""

    item_id: str
    start: int  # sample of the stream where its audio begins (prefix padding included)
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    partial: Future | None = None  # the partial decode in flight
    partial_at: int = 0  # the turn's end when the last partial was submitted (or its onset)
    final: Future | None = None  # the final decode (submitted at a pause or at the end)
    final_end: int = 0  # where the final decode's audio ends
    committed: bool = False
    done: bool = False


class LiveSession:
    """Turns of one stream (``options.turn_detection``; None: the client commits) and their
    partial and final transcripts, decoded by ``engine`` beside everything else it runs."""

    def __init__(
        self,
        engine: Any,
        options: LiveOptions,
        emit: Emit,
        vad: SileroVad | None = None,
        priority: int = Priority.LIVE,
        budget: PartialBudget | None = None,
    ) -> None:
        self.engine, self.options, self._emit = engine, options, emit
        self.budget = budget  # shared by the engine's sessions; None: no limit but one each
        self.priority = priority  # finals; partials run one level lower
        self.buffer = AudioBuffer()
        self._lock = threading.RLock()
        self._turn: Turn | None = None
        self._order: list[Turn] = []  # committed turns whose final is not out yet, in order
        self._previous_item: str | None = None
        self._context: list[str] = []  # words of the finals so far (the next turns' prompt)
        self._committed_at = 0  # sample where the audio not yet committed begins
        self.closed = False
        engine.open_live()
        self.detector: TurnDetector | None = None
        self._vad: SileroStream | None = None
        if options.turn_detection is not None:
            if vad is None:
                raise ValueError("turn detection needs a Silero VAD")
            self.detector = TurnDetector(options.turn_detection, options)
            self._vad = SileroStream(vad)

    # -- the owner's calls ----------------------------------------------------------------------
    def append(self, samples: np.ndarray) -> None:
        """16 kHz float32 audio, as it arrives."""
        samples = np.asarray(samples, np.float32)
        with self._lock:
            if self.closed or not len(samples):
                return
            self.buffer.append(samples)
            if self.detector is not None and self._vad is not None:
                for boundary in self.detector.push(self._vad.push(samples)):
                    self._on_boundary(boundary)
            elif self._turn is None and self.buffer.end - self._committed_at > 0:
                self._turn = Turn(ev.new_id("item"), self._committed_at)
            self._maybe_partial()
            self._trim()

    def commit(self) -> None:
        """The client's commit: everything not yet committed becomes a turn (``LiveError`` if
        it holds less than 100 ms)."""
        with self._lock:
            start = self._turn.start if self._turn is not None else self._committed_at
            held = self.buffer.end - start
            if held < MIN_COMMIT_S * SAMPLE_RATE:
                raise ev.LiveError(
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"100ms of audio, but buffer only has {held * 1000 / SAMPLE_RATE:.2f}ms of "
                    "audio.",
                    "input_audio_buffer_commit_empty",
                )
            turn = self._turn or Turn(ev.new_id("item"), start)
            self._turn = None
            if self.detector is not None:
                self.detector.reset()
            self._end_turn(turn, self.buffer.end, stopped=False)

    def clear(self) -> None:
        """Drop the audio not yet committed (and the turn being spoken)."""
        with self._lock:
            if self._turn is not None:
                self._cancel(self._turn)
                self._turn = None
            if self.detector is not None:
                self.detector.reset()
            self._committed_at = self.buffer.end
            self._emit(ev.Cleared())

    def close(self) -> None:
        """Stop: decodes in flight are cancelled, nothing more is emitted."""
        with self._lock:
            if not self.closed:
                self.engine.open_live(False)
            self.closed = True
            for turn in [self._turn, *self._order]:
                if turn is not None:
                    self._cancel(turn)
            self._turn, self._order = None, []

    @property
    def speaking(self) -> bool:
        """Whether a turn is open (speech not yet ended by silence or a commit)."""
        with self._lock:
            return self._turn is not None

    @property
    def pending(self) -> int:
        """Committed turns whose final is not out yet."""
        with self._lock:
            return len(self._order)

    # -- turns ----------------------------------------------------------------------------------
    def _on_boundary(self, b: Boundary) -> None:
        assert self.options.turn_detection is not None
        if b.kind == "start":
            pad = self.options.turn_detection.prefix_padding_ms * SAMPLE_RATE // 1000
            start = max(b.at - pad, self._committed_at, self.buffer.start)
            self._turn = Turn(ev.new_id("item"), start, partial_at=b.at)
            self._emit(ev.SpeechStarted(self._turn.item_id, ms(start)))
        elif self._turn is None:
            return
        elif b.kind == "pause":  # decode the final now; kept if the silence lasts
            if self._turn.partial is not None:  # the final needs the engine more
                self._turn.partial.cancel()
                self._turn.partial = None
            self._submit_final(self._turn, b.at)
        elif b.kind == "resume":
            self._drop_final(self._turn)
        elif b.kind in ("stop", "cut"):
            turn, self._turn = self._turn, None
            self._emit(ev.SpeechStopped(turn.item_id, ms(b.at)))
            self._end_turn(turn, b.at, stopped=True)
            if b.kind == "cut":  # speech goes on: the next turn begins at the cut
                self._turn = Turn(ev.new_id("item"), b.at)
                self._emit(ev.SpeechStarted(self._turn.item_id, ms(b.at)))

    def _end_turn(self, turn: Turn, end: int, stopped: bool) -> None:
        """Commit a turn ending at ``end``: its final decode (the one started at the pause, if
        the audio after it was silence) is awaited in turn order."""
        turn.committed = True
        self._committed_at = max(self._committed_at, end)
        self._emit(ev.Committed(turn.item_id, self._previous_item))
        self._previous_item = turn.item_id
        if turn.partial is not None:
            turn.partial.cancel()
        if turn.final is None or not stopped:
            self._drop_final(turn)
            self._submit_final(turn, end)
        self._order.append(turn)
        self._flush()  # its final (decoded from the pause) may be done already

    def _audio(self, turn: Turn, end: int) -> np.ndarray:
        return self.buffer.slice(turn.start, end)

    def _decode(self, audio: np.ndarray, priority: int) -> Future:
        prompt = " ".join(self._context[-self.options.context_words :]) if self._context else None
        prompt = " ".join(p for p in (self.options.prompt, prompt) if p) or None
        overrides: dict[str, Any] = {"initial_prompt": prompt} if prompt else {}
        if priority != self.priority:  # a partial: greedy only (a cut-off word fails the
            overrides["temperature"] = 0.0  # quality checks, and fallback would sample 5 ways)
            # and no second VAD: the turn is speech by this session's VAD, and the offline one
            # drops its first half second (too short a region), which cost a partial or two
            overrides["chunking"] = "fixed"
        return self.engine.submit(
            audio, language=self.options.language, priority=priority, **overrides
        )

    def _submit_final(self, turn: Turn, end: int) -> None:
        turn.final_end = end
        if self.budget is not None:
            self.budget.preempt()
        future = self._decode(self._audio(turn, end), self.priority)
        turn.final = future
        future.add_done_callback(lambda f: _RESULTS.submit(self._final_done, turn, f))

    def _drop_final(self, turn: Turn) -> None:
        if turn.final is not None:
            turn.final.cancel()
            turn.final = None

    def _cancel(self, turn: Turn) -> None:
        turn.done = True
        for future in (turn.partial, turn.final):
            if future is not None:
                future.cancel()

    # -- partials -------------------------------------------------------------------------------
    def _maybe_partial(self) -> None:
        turn = self._turn
        if turn is None or not self.options.partials or turn.partial is not None:
            return
        if turn.final is not None:  # paused: the final is being decoded
            return
        end = self.buffer.end
        interval = self.options.partial_interval_ms * SAMPLE_RATE // 1000
        if end - max(turn.partial_at, turn.start) < interval:
            return
        if self.budget is not None and not self.budget.acquire():
            return
        turn.partial_at = end
        priority = min(self.priority + 1, Priority.NORMAL)
        turn.partial = self._decode(self._audio(turn, end), priority)
        if self.budget is not None:
            self.budget.track(turn.partial)
        turn.partial.add_done_callback(lambda f: _RESULTS.submit(self._partial_done, turn, f))

    def _partial_done(self, turn: Turn, future: Future) -> None:
        with self._lock:
            if turn.partial is future:
                turn.partial = None
            if turn.done or turn.committed or future.cancelled() or future.exception():
                return
            words = future.result().text.split()
            before = len(turn.agreement.sent)
            stable = turn.agreement.update(words)
            if stable:
                self._emit(ev.Delta(turn.item_id, _joined(before, stable)))
            if words:
                unstable = " ".join(turn.agreement.unstable())
                self._emit(ev.Partial(turn.item_id, " ".join(turn.agreement.sent), unstable))
            if not self.closed:
                self._maybe_partial()

    # -- finals ---------------------------------------------------------------------------------
    def _final_done(self, turn: Turn, future: Future) -> None:
        with self._lock:
            if future is not turn.final or turn.done:
                return  # replaced (speech resumed) or the session was closed
            self._flush()

    def _flush(self) -> None:
        """Emit the finals that are done, in turn order."""
        while self._order and self._order[0].final is not None and self._order[0].final.done():
            turn = self._order.pop(0)
            turn.done = True
            assert turn.final is not None
            future, seconds = turn.final, (turn.final_end - turn.start) / SAMPLE_RATE
            if future.cancelled() or future.exception() is not None:
                message = "cancelled" if future.cancelled() else str(future.exception())
                self._emit(ev.Failed(turn.item_id, message))
                continue
            text = future.result().text.strip()
            rest = turn.agreement.rest_of(text.split())
            if rest:
                self._emit(ev.Delta(turn.item_id, _joined(len(turn.agreement.sent), rest)))
            self._emit(ev.Completed(turn.item_id, text, seconds))
            self._context += text.split()
            del self._context[: max(0, len(self._context) - self.options.context_words)]

    def _trim(self) -> None:
        """Drop audio no turn can still need (a prefix padding's worth is kept)."""
        keep = self._turn.start if self._turn is not None else self.buffer.end
        for turn in self._order:
            keep = min(keep, turn.start)
        pad = 0
        if self.options.turn_detection is not None:
            pad = self.options.turn_detection.prefix_padding_ms * SAMPLE_RATE // 1000
        self.buffer.drop_before(max(0, min(keep, self.buffer.end - pad)))


def _joined(before: int, words: list[str]) -> str:
    """Words appended to a transcript of ``before`` words: a space first unless they begin it."""
    text = " ".join(words)
    return " " + text if before else text
