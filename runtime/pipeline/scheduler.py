"""One scheduler for every input in flight: rows from all of them share encoder and decoder batches.

Each step takes up to B rows (the next chunk of a stream) from the inputs in order of arrival, so
the oldest input finishes first; encodes them once; decodes them together, grouped only where the
decoding loop needs one setting per batch (temperature, task, language, beam size, prompt length);
re-decodes hotter only the rows that fail the quality checks; and hands each result back to its
input. ``Runtime.transcribe`` runs one input through it, ``Runtime.transcribe_many`` many files and
``runtime.pipeline.engine.Engine`` the requests of the HTTP server.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from runtime.backend import Capabilities, Session
from runtime.pipeline.source import BatchOptions, Job, SourceRun, Stopwatch, Stream
from runtime.decoding import DecodingOptions, DecodingResult, decode, detect_language
from runtime.decoding.language import chunk_languages, file_language
from runtime.model.tokenizer import Tokenizer
from runtime.pipeline.sequential import align_windows, needs_fallback
from runtime.words.aligner import WordAligner


@dataclass
class Row:
    run: SourceRun
    stream: Stream
    job: Job
    prompt: list[int]
    language: str | None = None  # the chunk's own language (language_detection="chunk")


class Scheduler:
    def __init__(self, session: Session, tokenizer: Tokenizer, capabilities: Capabilities,
                 batch: BatchOptions) -> None:
        self.session, self.tokenizer, self.caps, self.batch = session, tokenizer, capabilities, batch
        self.clock = Stopwatch()
        self.runs: list[SourceRun] = []
        self.batches = 0
        self._aligner: WordAligner | None = None  # word timestamps, built when first asked
        self.rows = 0
        self._prep: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def prefetch(self, run: SourceRun) -> Future | None:
        """Prepare the input's next block (decode audio, VAD, mel) in the preparing thread, so
        it overlaps the encoder and decoder; once per block."""
        if not self.batch.prepare_ahead:  # blocks are then read when needed, in the worker
            return None
        with self._lock:
            if run.exhausted or run.error is not None or run._prepared is not None:
                return run.preparing
            if run.preparing is not None and not run.preparing.done():
                return run.preparing
            if self._prep is None:
                self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
            run.preparing = self._prep.submit(run.prepare)
            return run.preparing

    def close(self) -> None:
        """Stop the preparing thread (after the block it is on)."""
        if self._prep is not None:
            self._prep.shutdown(wait=True)
            self._prep = None

    def add(self, run: SourceRun) -> None:
        self.runs.append(run)

    def drop(self, run: SourceRun) -> None:
        """Forget an input (cancelled): its rows not yet decoded never run."""
        if run in self.runs:
            self.runs.remove(run)

    @property
    def pending(self) -> bool:
        return bool(self.runs)

    def ready_rows(self, limit: int | None = None) -> list[tuple[SourceRun, Stream]]:
        """(input, stream) pairs with a chunk to decode, oldest input first; an input whose
        audio cannot be read is marked failed and returned by the next ``step``."""
        limit = limit or self.batch.batch_size
        picked: list[tuple[SourceRun, Stream]] = []
        for run in list(self.runs):
            if run.error is not None:
                continue
            try:
                streams = run.ready(limit - len(picked))
            except Exception as exc:  # noqa: BLE001 - one input's failure fails only that input
                run.error = exc
                continue
            picked += [(run, s) for s in streams]
            if len(picked) >= limit:
                break
        return picked

    def step(self) -> list[SourceRun]:
        """Run one batch; return the inputs that are now finished (done or failed)."""
        picked = self.ready_rows()
        for run in self.runs:
            self.prefetch(run)
        if picked:
            rows = [Row(run, s, *run.take(s)) for run, s in picked]
            for row, result in zip(rows, self._run(rows)):
                row.run.finish(row.stream, row.job, result)
        finished = [r for r in self.runs if r.error is not None or r.done]
        for run in finished:
            self.runs.remove(run)
        return finished

    # -- one batch ------------------------------------------------------------------------------
    def _run(self, rows: list[Row]) -> list[DecodingResult]:
        t = time.perf_counter()
        spans = [(r.job.mel, r.job.start_frame, r.job.n_frames) for r in rows]
        size = self._static_size(len(rows))
        spans += [(rows[0].job.mel, 0, 0)] * (size - len(rows))  # zero windows fill a static batch
        features = self.session.encode(self.session.mel_windows(spans))
        if size > len(rows):
            features = self.session.take(features, np.arange(len(rows)))
        t = self.clock.add("encode", t)
        self._detect(rows, features)
        results = self._decode(features, rows)
        t = self.clock.add("decode", t)
        if any(r.run.options.word_timestamps for r in rows):  # one more decoder pass for words
            align_windows(self._word_aligner(), features, results, [r.job.n_frames for r in rows],
                          [r.run.options for r in rows])
            self.clock.add("words", t)
        self.batches += 1
        self.rows += len(rows)
        return results

    def _word_aligner(self) -> WordAligner:
        if self._aligner is None:
            self._aligner = WordAligner(self.session, self.tokenizer, self.caps)
        return self._aligner

    def _static_size(self, n: int) -> int:
        """Rows to encode for ``n`` windows on a static-shape encoder: the smallest static size
        that holds them, else a whole number of calls of the largest (an NPU encoder with a
        static batch of 1 runs a batch of 8 in 8 calls, and the decoder still gets all 8)."""
        sizes = sorted(self.caps.encoder_batch_sizes or ())
        if not sizes:
            return n
        fitting = [s for s in sizes if s >= n]
        if fitting:
            return fitting[0]
        return -(-n // sizes[-1]) * sizes[-1]

    def _detect(self, rows: list[Row], features) -> None:
        """One language per input (``file_language`` over its rows of its first batch) and,
        with ``language_detection="chunk"``, each row's own (``chunk_languages``)."""
        todo = [i for i, r in enumerate(rows) if r.run.language is None or (
            r.run.options.language_detection == "chunk" and r.run.options.language is None
            and self.tokenizer.multilingual)]
        if not todo:
            return
        _, probs = detect_language(self.session, self.session.take(features, np.array(todo)),
                                   self.tokenizer)
        by_run: dict[int, list[tuple[int, dict[str, float]]]] = {}
        for i, row_probs in zip(todo, probs):
            by_run.setdefault(id(rows[i].run), []).append((i, row_probs))
        for members in by_run.values():
            run, found = rows[members[0][0]].run, [p for _, p in members]
            if run.language is None:
                guess = file_language(found, run.options.language_threshold)
                run.language, run.language_probability = guess.language, guess.probability
            if run.options.language_detection == "chunk" and run.options.language is None:
                chosen = chunk_languages(found, run.options.language_threshold, run.language)
                for (i, _), language in zip(members, chosen):
                    rows[i].language = language

    def _decode(self, features, rows: list[Row]) -> list[DecodingResult]:
        """Decode every row; re-decode only failing rows at their next temperature, batched."""
        results: list[DecodingResult | None] = [None] * len(rows)
        todo, level = list(range(len(rows))), 0
        while todo:
            groups: dict[tuple[DecodingOptions, int], list[int]] = {}
            for r in todo:  # rows decode together when the loop's settings are one
                run = rows[r].run
                opts = run.options.decoding_options(run.options.temperatures[level], None,
                                                    rows[r].language or run.language)
                groups.setdefault((opts, len(rows[r].prompt)), []).append(r)
            for (opts, _), members in groups.items():
                parts = [[r] for r in members] if self._sequential else [members]
                for part in parts:
                    feats = self.session.take(features, np.array(part))
                    out = decode(self.session, feats, self.tokenizer, opts,
                                 prompts=[rows[r].prompt for r in part])
                    for r, res in zip(part, out):
                        results[r] = res
            level += 1
            todo = [r for r in todo if level < len(rows[r].run.options.temperatures)
                    and needs_fallback(results[r], rows[r].run.options)]
        return results  # type: ignore[return-value]

    @property
    def _sequential(self) -> bool:
        return self.batch.decoder == "sequential" or not self.caps.batched_decoder
