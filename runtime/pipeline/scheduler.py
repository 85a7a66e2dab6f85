"""Which rows run next, from every input in flight: the scheduler of the batched path.

Each step takes up to B rows (the next window of a stream) from the inputs in order of priority
and then of arrival, so live turns go first and the oldest input finishes first (``schedule``);
with a ``ContinuousRunner`` a live row joins the running batch at the next decoder step, beside
file rows; a ``BatchRunner`` runs them
(``runtime.pipeline.runner``); each result goes back to its input (``update``), which cuts it
into segments and moves its stream on. A preparing thread decodes audio, runs the VAD and
computes the log-mel of each input's next block while the runner works. ``Runtime.transcribe``
runs one input through it (``run_to_completion``), ``Runtime.transcribe_many`` many files and
``runtime.pipeline.engine.Engine`` the requests of the HTTP server.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from runtime.decoding import DecodingResult
from runtime.pipeline.options import BatchOptions, Priority
from runtime.pipeline.runner import Row
from runtime.pipeline.source import SourceRun, Stream


class Runner(Protocol):
    """What steps the scheduler: ``BatchRunner`` (whole batches) or ``ContinuousRunner``
    (``runtime.pipeline.continuous``: rows join and leave the decoder batch at every step)."""

    batches: int
    rows: int

    def step(self, scheduler: Scheduler) -> list[SourceRun]: ...


@dataclass
class Batch:
    """The rows chosen for one step, and the input and the stream each came from."""

    rows: list[Row] = field(default_factory=list)
    runs: list[SourceRun] = field(default_factory=list)  # each row's ``input``, as a SourceRun
    streams: list[Stream] = field(default_factory=list)


class Scheduler:
    def __init__(self, batch: BatchOptions) -> None:
        self.batch = batch
        self.runs: list[SourceRun] = []
        self._prep: ThreadPoolExecutor | None = None
        self._prep_live: ThreadPoolExecutor | None = None  # live turns never queue behind files
        self.live_reserve = 0  # rows kept free for live turns (while live sessions are open)
        self._lock = threading.Lock()

    def prefetch(self, run: SourceRun) -> Future | None:
        """Prepare the input's next block (decode audio, VAD, mel) in the preparing thread, so
        it overlaps the encoder and decoder; once per block."""
        if not self.batch.prepare_ahead:  # blocks are then read when needed, in the worker
            return None
        with self._lock:
            if not run.needs_preparing:
                return run.preparing
            run.preparing = self._preparer(run.priority < Priority.NORMAL).submit(run.prepare)
            return run.preparing

    def _preparer(self, live: bool) -> ThreadPoolExecutor:
        """The preparing thread: one for files, one for live turns (a turn's few seconds must
        not wait behind a file's 4-minute block)."""
        if live:
            if self._prep_live is None:
                self._prep_live = ThreadPoolExecutor(1, thread_name_prefix="prepare-live")
            return self._prep_live
        if self._prep is None:
            self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        return self._prep

    def close(self) -> None:
        """Stop the preparing threads (after the block each is on)."""
        for prep in (self._prep, self._prep_live):
            if prep is not None:
                prep.shutdown(wait=True)
        self._prep = self._prep_live = None

    def add(self, run: SourceRun) -> None:
        self.runs.append(run)

    def drop(self, run: SourceRun) -> None:
        """Forget an input (cancelled): its rows not yet decoded never run."""
        if run in self.runs:
            self.runs.remove(run)

    @property
    def pending(self) -> bool:
        return bool(self.runs)

    def ready_rows(
        self, limit: int | None = None, live_alone: bool = False
    ) -> list[tuple[SourceRun, Stream]]:
        """(input, stream) pairs with a window to decode, by priority then oldest input first
        (live turns first); rows of other inputs leave ``live_reserve`` of the ``limit`` free
        (a continuous runner's free rows: a live turn then joins at once). An input whose
        audio cannot be read is marked failed and returned by the next ``update``."""
        limit = limit or self.batch.batch_size
        picked: list[tuple[SourceRun, Stream]] = []
        for run in sorted(self.runs, key=lambda r: r.priority):  # stable: oldest first
            cap = limit if run.priority < Priority.NORMAL else limit - self.live_reserve
            if run.error is not None or len(picked) >= cap:
                continue
            try:
                streams = run.ready(cap - len(picked))
            except Exception as exc:  # noqa: BLE001 - one input's failure fails only that input
                run.error = exc
                continue
            picked += [(run, s) for s in streams]
            if len(picked) >= limit:
                break
        live = [(run, s) for run, s in picked if run.priority < Priority.NORMAL]
        if live_alone and live:  # encoded and joined alone: file windows wait one step
            return live
        for run in sorted(self.runs, key=lambda r: r.priority):  # still free: split the ends
            cap = limit if run.priority < Priority.NORMAL else limit - self.live_reserve
            if run.error is None and len(picked) < cap:
                picked += [(run, s) for s in run.split_tail(cap - len(picked))]
        return picked

    def schedule(self, limit: int | None = None, live_alone: bool = False) -> Batch:
        """The next batch of up to ``limit`` rows (the batch size; possibly empty), and the next
        blocks of every input prepared ahead. ``live_alone``: live rows, when there are any, make
        the batch by themselves (a continuous runner's joiners: a live turn then waits for the
        encoding of its own window only, not of the file windows joining beside it)."""
        picked = self.ready_rows(limit, live_alone)
        for run in self.runs:
            self.prefetch(run)
        batch = Batch()
        for run, stream in picked:
            window, prompt = run.take(stream)
            batch.rows.append(Row(window, prompt, run))
            batch.runs.append(run)
            batch.streams.append(stream)
        return batch

    def update(self, batch: Batch, results: list[DecodingResult]) -> list[SourceRun]:
        """Hand each result to its input; return the inputs now finished (done or failed)."""
        for row, run, stream, result in zip(batch.rows, batch.runs, batch.streams, results):
            run.finish(stream, row.window, result)
        finished = [r for r in self.runs if r.error is not None or r.done]
        for run in finished:
            self.runs.remove(run)
        return finished

    def step(self, runner: Runner) -> list[SourceRun]:
        """One step of the runner (a whole batch, or one decoder step with rows joining and
        leaving): the inputs now finished."""
        return runner.step(self)


def run_to_completion(scheduler: Scheduler, runner: Runner, run: SourceRun) -> None:
    """One input through the scheduler (``Runtime.transcribe``'s batched path); raises its
    error (unreadable audio) if it failed."""
    scheduler.add(run)
    try:
        while scheduler.pending:
            for finished in scheduler.step(runner):
                if finished.error is not None:
                    raise finished.error
    finally:
        scheduler.close()
