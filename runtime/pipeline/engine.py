"""A transcription engine for many inputs at once: the server's and ``transcribe_many``'s.

Inputs are submitted from any thread and answered with a ``concurrent.futures.Future``. A
preparing thread decodes each input's audio, runs the VAD and computes its log-mel (block by block,
one block ahead), while one worker thread steps the ``Scheduler`` with a ``BatchRunner``: rows from
every input in flight share encoder and decoder batches. The engine works on a ``LoadedModel``
(a session, its tokenizer and two callables), never on the ``Runtime`` that built it. A batch
forms when it is full, or when inputs still being prepared could not fill it within
``max_wait_s``. ``cross_request=False`` runs one input at a time
(the baseline the load tool compares against). Inputs carry a ``Priority``: live turns are
admitted and scheduled before files, and do not count against ``max_queue`` (the live-session
limit bounds them); ``on_segments`` streams an input's segments in order as they are decoded.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from runtime.backend import Capabilities, Session
from runtime.errors import WhisperRuntimeError
from runtime.model.tokenizer import Tokenizer
from runtime.output.results import Segment, Transcription
from runtime.pipeline.continuous import make_runner
from runtime.pipeline.options import BatchOptions, Chunking, Priority, TranscribeOptions
from runtime.pipeline.scheduler import Scheduler
from runtime.pipeline.source import SourceRun

log = logging.getLogger(__name__)


class QueueFullError(WhisperRuntimeError):
    """Too many inputs in flight (or the engine is closing): try again later."""


@dataclass(frozen=True)
class LoadedModel:
    """What the engine needs of a loaded model: the session and its tokenizer, what they can do,
    how options are checked against the model, and how segments become a ``Transcription``."""

    session: Session
    tokenizer: Tokenizer
    capabilities: Capabilities
    # (options, language, task, overrides) -> checked options; raises RuntimeInputError
    options: Callable[
        [TranscribeOptions | None, str | None, str, dict[str, Any]], TranscribeOptions
    ]
    # (segments, language, duration, timings, language_probability) -> Transcription
    transcription: Callable[
        [list[Segment], str | None, float, dict[str, float], float | None], Transcription
    ]


# Engines whose worker runs. The worker is a daemon thread: a process that exits while it is
# inside ONNX Runtime aborts ("terminate called without an active exception", status 134), as
# when a consumer of ``transcribe_many`` stops on an exception and its generator is never closed.
_RUNNING: weakref.WeakSet[Engine] = weakref.WeakSet()


def close_running_engines() -> None:
    """Cancel and join every engine still running (at interpreter exit, before teardown)."""
    for engine in list(_RUNNING):
        engine.close(wait=False)


atexit.register(close_running_engines)


@dataclass
class _Request:
    run: SourceRun
    future: Future
    submitted: float
    prepared: Future | None = None
    started: float | None = None  # when its first rows ran


class Engine:
    def __init__(
        self,
        model: LoadedModel,
        batch: BatchOptions,
        *,
        max_wait_s: float = 0.05,
        max_queue: int | None = 64,
        cross_request: bool = True,
    ) -> None:
        self.model, self.batch = model, batch
        self.scheduler = Scheduler(batch)
        self.runner = make_runner(model.session, model.tokenizer, model.capabilities, batch)
        self.max_wait_s, self.cross_request = max_wait_s, cross_request
        self.max_queue = max_queue  # None: unbounded
        self._cond = threading.Condition()
        self._incoming: deque[_Request] = deque()
        self._active: dict[int, _Request] = {}
        self._worker: threading.Thread | None = None
        self._closing = False
        self._live_sessions = 0
        self._counts = dict(requests_done=0, errors=0, cancelled=0)
        self._waits: list[float] = []
        self._audio_s = self._busy_s = 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Engine:
        if self._worker is None:
            self._worker = threading.Thread(target=self._loop, name="engine", daemon=True)
            self._worker.start()
            _RUNNING.add(self)
        return self

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs (not started yet counts as alive: submit starts it)."""
        return self._worker is None or self._worker.is_alive() or self._closing

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close(wait=True)

    def close(self, wait: bool = True) -> None:
        """Stop taking inputs; with ``wait``, finish those in flight first, else cancel them."""
        with self._cond:
            self._closing = True
            if not wait:
                for req in list(self._incoming) + list(self._active.values()):
                    req.future.cancel()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
        _RUNNING.discard(self)
        self.scheduler.close()

    # -- submitting -----------------------------------------------------------------------------
    def submit(
        self,
        audio: Any,
        *,
        language: str | None = None,
        task: str = "transcribe",
        options: TranscribeOptions | None = None,
        priority: int = Priority.NORMAL,
        on_segments: Callable[[list[Segment]], None] | None = None,
        chunking: Chunking | None = None,
        **overrides: Any,
    ) -> Future:
        """Queue one input (path, bytes or 16 kHz float32 array). Bad options raise here; audio
        that cannot be read fails only its own future (``AudioError``). ``on_segments`` is
        called from the worker thread with each run of segments that is final, in order.
        ``chunking`` overrides the engine's for this input: "fixed" for audio already known to
        be speech (a live turn's partial), which the VAD would cut or drop while it is short."""
        opts = self.model.options(options, language, task, overrides)
        batch = self.batch
        if chunking is not None:
            batch = dataclasses.replace(batch, chunking=chunking)
        run = SourceRun(
            self.model.session,
            self.model.tokenizer,
            opts,
            batch,
            audio,
            opts.language,
            priority=priority,
            on_segments=on_segments,
        )
        req = _Request(run, Future(), time.perf_counter())
        with self._cond:
            if self._closing:
                raise QueueFullError("the engine is shutting down; no new requests are taken")
            if (
                priority >= Priority.NORMAL
                and self.max_queue is not None
                and len(self._incoming) + len(self._active) >= self.max_queue
            ):
                raise QueueFullError(f"{self.max_queue} requests are in flight; retry later")
            self._incoming.append(req)
            req.prepared = self.scheduler.prefetch(run)
            if req.prepared is not None:  # None without prepare_ahead: nothing to wait for
                req.prepared.add_done_callback(self._wake)
        self.start()
        return req.future

    def open_live(self, opened: bool = True) -> None:
        """A live session opened (or, ``opened=False``, closed): while any is open, one row of
        each batch is kept for live turns, so a final never waits for a file row to end."""
        with self._cond:
            self._live_sessions += 1 if opened else -1
            self.scheduler.live_reserve = 1 if self._live_sessions > 0 else 0

    def _wake(self, _: Future) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- the worker -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                if self._iterate():
                    return
            except Exception as exc:  # noqa: BLE001 - never die leaving futures unanswered
                log.exception("engine worker: unexpected error; failing the requests in flight")
                with self._cond:
                    self._after_step(self._fail_all(exc))
                    for req in list(self._incoming):
                        self._incoming.remove(req)
                        req.run.error = exc
                        self._resolve(req, time.perf_counter())

    def _iterate(self) -> bool:
        """One batch, or a wait for work; True when closed and drained."""
        with self._cond:
            self._admit()
            if self._closing and not self._incoming and not self._active:
                return True
            if not self.scheduler.pending:
                self._cond.wait(timeout=0.5)
                return False
            if self._should_wait():
                self._cond.wait(timeout=self.max_wait_s / 4)
                return False
        t = time.perf_counter()
        try:
            finished = self.scheduler.step(self.runner)
        except Exception as exc:  # noqa: BLE001 - a backend failure fails the batch's inputs
            finished = self._fail_all(exc)
        self._busy_s += time.perf_counter() - t
        self._after_step(finished)
        return False

    def _fail_all(self, exc: Exception) -> list[SourceRun]:
        """The backend failed mid-batch: every input in the scheduler gets the error (its rows'
        state is unknown), rather than the worker dying and leaving futures unanswered."""
        failed = list(self.scheduler.runs)
        for run in failed:
            run.error = exc
            self.scheduler.drop(run)
        return failed

    def _admit(self) -> None:
        """Move prepared (or failed) inputs into the scheduler; drop cancelled ones."""
        for req in [r for r in self._incoming if r.future.cancelled()]:
            self._incoming.remove(req)
            self._counts["cancelled"] += 1
        for key, req in list(self._active.items()):
            if req.future.cancelled():
                self.scheduler.drop(req.run)
                del self._active[key]
                self._counts["cancelled"] += 1
        for req in sorted(self._incoming, key=lambda r: r.run.priority):  # stable: oldest first
            if not (req.prepared is None or req.prepared.done()):
                continue  # being prepared; a live turn need not wait for a file ahead of it
            if not self.cross_request and self._active:
                break
            self._incoming.remove(req)
            self._active[id(req.run)] = req
            self.scheduler.add(req.run)

    def _should_wait(self) -> bool:
        """Wait for inputs still being prepared while the batch is short and young."""
        if not self._incoming or not self.cross_request or self._closing:
            return False
        if any(r.run.priority < Priority.NORMAL for r in self._active.values()):
            return False  # live work waits for no one: run what is ready now
        ready = sum(1 for r in self._active.values() for st in r.run.streams if st.has_work)
        if ready >= self.batch.batch_size:
            return False
        oldest = min((r.submitted for r in self._active.values()), default=time.perf_counter())
        return time.perf_counter() - oldest < self.max_wait_s

    def _after_step(self, finished: list[SourceRun]) -> None:
        now = time.perf_counter()
        with self._cond:
            for req in self._active.values():
                if req.started is None and req.run.streams:
                    req.started = now
                    self._waits.append(now - req.submitted)
            for run in finished:
                done = self._active.pop(id(run), None)
                if done is not None:
                    self._resolve(done, now)
            self._cond.notify_all()

    def _resolve(self, req: _Request, now: float) -> None:
        run = req.run
        if run.error is not None:
            self._counts["errors"] += 1
            if req.future.set_running_or_notify_cancel():
                req.future.set_exception(run.error)
            return
        self._counts["requests_done"] += 1
        self._audio_s += run.duration
        timings = dict(run.clock.totals, total=now - req.submitted)
        result = self.model.transcription(
            run.ordered_segments(), run.language, run.duration, timings, run.language_probability
        )
        if req.future.set_running_or_notify_cancel():
            req.future.set_result(result)

    # -- numbers --------------------------------------------------------------------------------
    def stats(self) -> dict[str, float | int]:
        with self._cond:
            queued = sum(st.has_work for r in self._active.values() for st in r.run.streams)
            batches, rows = self.runner.batches, self.runner.rows
            return dict(
                requests_in_flight=len(self._incoming) + len(self._active),
                queued_chunks=queued,
                batches=batches,
                mean_batch_size=rows / batches if batches else 0.0,
                mean_wait_s=sum(self._waits) / len(self._waits) if self._waits else 0.0,
                **self._counts,
                audio_seconds=self._audio_s,
                busy_seconds=self._busy_s,
                realtime_factor=self._busy_s / self._audio_s if self._audio_s else 0.0,
                x_realtime=self._audio_s / self._busy_s if self._busy_s else 0.0,
            )
