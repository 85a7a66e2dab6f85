"""Iteration-level batching: rows join and leave the decoder batch at every step.

``BatchRunner`` decodes a batch until its last row ends, so the batch empties as rows finish
(3.8 busy rows of 8 on average on a 15-minute file) and rows with different prompt lengths
cannot decode together at all. Here, as LLM servers schedule, the decoder state holds up to B
rows of any lengths (a ``JoinableState``): when a row ends, its result goes back to its input at
once (whose stream then has its next window ready), and the next windows of any input in flight
are encoded, their prompts prefilled, and their rows join the running batch before its next step.

Rows decode here greedily at their first temperature (the default). Beam search rows, and rows
whose result fails the quality checks (temperature fallback), decode through ``BatchRunner``'s
loop with their window's features: encoded again when a row needs them (fallback is rare, and 8
rows' features are 18 MB for tiny), kept only for rows whose words are aligned. A row's tokens
never depend on its batch mates: the state's rows are independent, and each row has its own
filters and prompt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.backend import JoinableState
from runtime.decoding import DecodingOptions, DecodingResult
from runtime.decoding.decode import Prompt, build_filters, build_prompt
from runtime.decoding.filters import LogitFilter, log_softmax, logsumexp, mask_filters
from runtime.pipeline.runner import BatchRunner, Row
from runtime.pipeline.scheduler import Batch, Scheduler
from runtime.pipeline.segments import align_windows
from runtime.pipeline.source import SourceRun, Stream


@dataclass
class Active:
    """A row in the decoder batch: where it came from, and its decoding so far."""

    row: Row
    run: SourceRun
    stream: Stream
    features: Any  # its window's encoder output when its words are aligned, else None
    options: DecodingOptions
    prompt: Prompt
    filters: list[LogitFilter]
    max_steps: int
    no_speech: float
    logits: np.ndarray  # (V,) for its next token
    seq: np.ndarray  # (1, n_text_ctx): the prompt, then the tokens sampled so far
    n_seq: int = 0
    sum_logprob: float = 0.0

    @property
    def tokens(self) -> list[int]:
        """The tokens sampled so far."""
        return self.seq[0, self.prompt.sample_begin : self.n_seq].tolist()

    def push(self, token: int) -> None:
        self.seq[0, self.n_seq] = token
        self.n_seq += 1


class ContinuousRunner(BatchRunner):
    """A ``BatchRunner`` whose ``step`` advances the decoder by one token for every row in it,
    after letting new rows join (see the module docstring)."""

    def step(self, scheduler: Scheduler) -> list[SourceRun]:
        try:
            return self._step(scheduler)
        except Exception:
            self._reset()  # the rows' state is unknown: the engine fails their inputs
            raise

    def _reset(self) -> None:
        self._active: list[Active] = []
        self._state: JoinableState | None = None

    def _step(self, scheduler: Scheduler) -> list[SourceRun]:
        if not hasattr(self, "_active"):
            self._reset()
        self._forget(scheduler)
        finished = self._admit(scheduler)
        # inputs that failed (unreadable audio) or ended without a row (no speech) while
        # being scheduled: no row of theirs will finish to report them
        finished += scheduler.update(Batch(), [])
        if not self._active:
            return finished
        t = time.perf_counter()
        picked = self._pick()
        ended = [
            i
            for i, (a, token) in enumerate(zip(self._active, picked))
            if token == self.tokenizer.special.eot or a.n_seq - a.prompt.sample_begin >= a.max_steps
        ]
        self.batches += 1
        self.rows += len(self._active)
        t = self.clock.add("decode", t)
        if ended:
            finished += self._finish(scheduler, ended)
        if self._active:
            assert self._state is not None
            tokens = np.array([[a.seq[0, a.n_seq - 1]] for a in self._active], dtype=np.int64)
            for a, logits in zip(self._active, self._state.logits(tokens)[:, 0]):
                a.logits = logits
            self.clock.add("decode", t)
        return finished

    # -- rows leaving ---------------------------------------------------------------------------
    def _forget(self, scheduler: Scheduler) -> None:
        """Rows of inputs no longer in the scheduler (cancelled, failed) leave unfinished."""
        gone = [i for i, a in enumerate(self._active) if a.run not in scheduler.runs]
        if gone:
            self._leave(gone)

    def _leave(self, rows: list[int]) -> None:
        survivors = [i for i in range(len(self._active)) if i not in set(rows)]
        self._active = [self._active[i] for i in survivors]
        if self._state is not None:
            self._state.keep(np.array(survivors, dtype=np.int64))

    def _finish(self, scheduler: Scheduler, ended: list[int]) -> list[SourceRun]:
        """Ended rows: their results (after any fallback and word alignment, row by row)
        back to their inputs, and out of the batch."""
        rows = [self._active[i] for i in ended]
        self._leave(ended)
        results = []
        for a in rows:
            t = time.perf_counter()
            first, features = self._result(a), a.features
            if features is None and self._retry(a.row, first, 1):
                features = self.encode([a.row])  # the same features as when it joined
            result = self.decode(features, [a.row], first=[first])
            t = self.clock.add("decode", t)
            if a.run.options.word_timestamps:
                n_frames = [a.row.window.n_frames]
                align_windows(self._word_aligner(), a.features, result, n_frames, [a.run.options])
                self.clock.add("words", t)
            results += result
        batch = Batch([a.row for a in rows], [a.run for a in rows], [a.stream for a in rows])
        return scheduler.update(batch, results)

    def _result(self, a: Active) -> DecodingResult:
        tokens = (
            a.tokens[:-1] if a.tokens and a.tokens[-1] == self.tokenizer.special.eot else a.tokens
        )
        language = a.options.language or "en"
        return DecodingResult(
            tokens=tokens,
            text=self.tokenizer.decode(tokens).strip(),
            language=language,
            avg_logprob=a.sum_logprob / (len(tokens) + 1),
            sum_logprob=a.sum_logprob,
            no_speech_prob=a.no_speech,
            temperature=a.options.temperature,
            language_probs=None,
        )

    # -- the next token of every row ------------------------------------------------------------
    def _pick(self) -> list[int]:
        """Each row's next token, greedy (temperature 0), after its own filters."""
        filtered = np.stack([a.logits for a in self._active])  # the one copy the filters mask
        for k, a in enumerate(self._active):
            mask_filters(a.filters, filtered[k : k + 1], a.seq[:, : a.n_seq])
        picked = filtered.argmax(-1)
        logprobs = filtered[np.arange(len(picked)), picked] - logsumexp(filtered)
        for a, token, lp in zip(self._active, picked.tolist(), logprobs.tolist()):
            a.push(token)
            a.sum_logprob += lp
        return picked.tolist()

    # -- rows joining ---------------------------------------------------------------------------
    def _admit(self, scheduler: Scheduler) -> list[SourceRun]:
        """The next windows of the inputs in flight, up to the free rows: encoded, prompts
        prefilled, joined to the batch. Rows this loop does not decode (beam search) decode
        at once through ``BatchRunner``; returns the inputs that finished by that."""
        free = self.batch.batch_size - len(self._active)
        if free <= 0:
            return []
        batch = scheduler.schedule(free, live_alone=True)
        if not batch.rows:
            return []
        t = time.perf_counter()
        features = self.encode(batch.rows)
        t = self.clock.add("encode", t)
        self.languages(batch.rows, features)
        options = [self._options(r) for r in batch.rows]
        now = [i for i, o in enumerate(options) if o.beam_size or o.temperature > 0]
        joining = [i for i in range(len(batch.rows)) if i not in set(now)]
        groups: dict[tuple[DecodingOptions, tuple[int, ...]], list[int]] = {}
        n_ctx = self.session.model.dims.n_text_ctx
        prompts = {}
        for i in joining:
            row = batch.rows[i]
            language = options[i].language or "en"
            prompts[i] = build_prompt(self.tokenizer, options[i], language, n_ctx, [row.prompt])
            groups.setdefault(
                (options[i], (prompts[i].tokens.shape[1], prompts[i].sot_index)), []
            ).append(i)
        for (opts, _), members in groups.items():
            self._prefill(batch, features, opts, members, prompts)
        self.clock.add("decode", t)
        if not now:
            return []
        rows = [batch.rows[i] for i in now]
        results = self.decode_rows(self.session.take(features, np.array(now)), rows)
        picked = Batch(rows, [batch.runs[i] for i in now], [batch.streams[i] for i in now])
        return scheduler.update(picked, results)

    def _options(self, row: Row) -> DecodingOptions:
        opts = row.input.options
        return opts.decoding_options(opts.temperatures[0], None, row.language or row.input.language)

    def _prefill(
        self,
        batch: Batch,
        features: Any,
        options: DecodingOptions,
        members: list[int],
        prompts: dict[int, Prompt],
    ) -> None:
        """Rows with one prompt shape read their prompts in one state, which then joins."""
        feats = self.session.take(features, np.array(members))
        state = self.session.decoder(feats) if self._state is None else self._state.incoming(feats)
        assert isinstance(state, JoinableState), "joinable_decoder promises JoinableState"
        tokens = np.concatenate([prompts[i].tokens for i in members])
        sot = prompts[members[0]].sot_index
        first = state.logits(tokens, positions=(sot, -1))
        no_speech = np.exp(log_softmax(first[:, 0]))[:, self.tokenizer.special.no_speech]
        n_ctx = self.session.model.dims.n_text_ctx
        sample_len = options.sample_len or n_ctx // 2
        for k, i in enumerate(members):
            prompt, words = prompts[i], batch.runs[i].options.word_timestamps
            seq = np.zeros((1, n_ctx), np.int64)
            seq[0, : prompt.sample_begin] = prompt.tokens[0]
            self._active.append(
                Active(
                    row=batch.rows[i],
                    run=batch.runs[i],
                    stream=batch.streams[i],
                    features=self.session.take(feats, np.array([k])) if words else None,
                    options=options,
                    prompt=prompt,
                    filters=build_filters(self.tokenizer, options, prompt.sample_begin),
                    max_steps=min(sample_len, n_ctx - prompt.sample_begin),
                    no_speech=float(no_speech[k]),
                    logits=first[k, 1],
                    seq=seq,
                    n_seq=prompt.sample_begin,
                )
            )
        if self._state is None:
            state.reserve(self.batch.batch_size)
            self._state = state
        else:
            self._state.join(state)


def make_runner(session: Any, tokenizer: Any, capabilities: Any, batch: Any) -> BatchRunner:
    """The runner the batch options ask for: rows joining at every step where the backend's
    decoder states are joinable, else whole batches."""
    if batch.decoder == "continuous" and capabilities.joinable_decoder:
        return ContinuousRunner(session, tokenizer, capabilities, batch)
    return BatchRunner(session, tokenizer, capabilities, batch)
