"""Running one batch of rows on a session: encode, choose languages, decode with fallback, align
words. The scheduler decides *which* rows run (``runtime.pipeline.scheduler``); this runs them.
The sequential path runs its windows through the same code, one row at a time, so temperature
fallback and language detection are written once.

Rows decode together only where the decoding loop needs one setting per call (temperature, task,
language, beam size, prompt length); only rows that fail the quality checks are decoded again,
hotter, batched again. A row's result never depends on the rows it is batched with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from runtime.backend import Capabilities, Session
from runtime.decoding import DecodingOptions, DecodingResult, decode, detect_language
from runtime.decoding.language import LanguageGuess, chunk_languages, file_language
from runtime.model.tokenizer import Tokenizer
from runtime.pipeline.options import BatchOptions, TranscribeOptions
from runtime.pipeline.segments import align_windows, needs_fallback
from runtime.pipeline.window import Stopwatch, Window
from runtime.words.aligner import WordAligner


class Input(Protocol):
    """What a row's input holds for the runner: its options, and its language once known
    (``runtime.pipeline.source.SourceRun``; the sequential path's ``SequentialInput``)."""

    options: TranscribeOptions
    language: str | None
    language_probability: float | None


@dataclass
class SequentialInput:
    """The ``Input`` of the sequential path: one file, its language decided before decoding."""

    options: TranscribeOptions
    language: str | None
    language_probability: float | None = None


@dataclass
class Row:
    """A window in a batch, with its prompt; ``language`` is the window's own in per-chunk mode."""

    window: Window
    prompt: list[int]
    input: Input
    language: str | None = None


class BatchRunner:
    def __init__(
        self,
        session: Session,
        tokenizer: Tokenizer,
        capabilities: Capabilities,
        batch: BatchOptions,
    ) -> None:
        self.session, self.tokenizer, self.caps, self.batch = (
            session,
            tokenizer,
            capabilities,
            batch,
        )
        self.clock = Stopwatch()
        self.batches = self.rows = 0  # counted for the engine's stats
        self._aligner: WordAligner | None = None  # word timestamps, built when first asked

    def run(self, rows: list[Row]) -> list[DecodingResult]:
        """Encode the rows' windows in one call and decode them: one result per row."""
        t = time.perf_counter()
        features = self.encode(rows)
        self.clock.add("encode", t)
        return self.decode_rows(features, rows)

    def encode(self, rows: list[Row]) -> Any:
        """Features of every row's window; a static-shape encoder gets zero windows to fill its
        batch sizes, and only the rows' features are kept."""
        spans = [(r.window.mel, r.window.start_frame, r.window.n_frames) for r in rows]
        size = self._static_size(len(rows))
        spans += [(rows[0].window.mel, 0, 0)] * (size - len(rows))
        features = self.session.encode(self.session.mel_windows(spans))
        if size > len(rows):
            features = self.session.take(features, np.arange(len(rows)))
        return features

    def decode_rows(self, features: Any, rows: list[Row]) -> list[DecodingResult]:
        """Languages, decoding with fallback, and words where asked, for encoded rows."""
        t = time.perf_counter()
        self.languages(rows, features)
        results = self.decode(features, rows)
        t = self.clock.add("decode", t)
        if any(r.input.options.word_timestamps for r in rows):  # one more decoder pass for words
            align_windows(
                self._word_aligner(),
                features,
                results,
                [r.window.n_frames for r in rows],
                [r.input.options for r in rows],
            )
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

    def languages(self, rows: list[Row], features: Any) -> None:
        """One language per input (``file_language`` over its rows of its first batch) and,
        with ``language_detection="chunk"``, each row's own (``chunk_languages``)."""
        todo = [
            i
            for i, r in enumerate(rows)
            if r.input.language is None
            or (
                r.input.options.language_detection == "chunk"
                and r.input.options.language is None
                and self.tokenizer.multilingual
            )
        ]
        if not todo:
            return
        _, probs = detect_language(
            self.session, self.session.take(features, np.array(todo)), self.tokenizer
        )
        by_input: dict[int, list[tuple[int, dict[str, float]]]] = {}
        for i, row_probs in zip(todo, probs):
            by_input.setdefault(id(rows[i].input), []).append((i, row_probs))
        for members in by_input.values():
            source, found = rows[members[0][0]].input, [p for _, p in members]
            if source.language is None:
                guess = file_language(found, source.options.language_threshold)
                source.language, source.language_probability = guess.language, guess.probability
            if source.options.language_detection == "chunk" and source.options.language is None:
                chosen = chunk_languages(found, source.options.language_threshold, source.language)
                for (i, _), language in zip(members, chosen):
                    rows[i].language = language

    def decode(
        self, features: Any, rows: list[Row], first: list[DecodingResult] | None = None
    ) -> list[DecodingResult]:
        """Decode every row; re-decode only failing rows at their next temperature, batched.
        ``first``: the rows' results at the first temperature, decoded elsewhere (the
        continuous runner), so only their fallback runs here."""
        results: dict[int, DecodingResult] = {}  # by row; every row decodes at level 0
        todo, level = list(range(len(rows))), 0
        if first is not None:
            results, level = dict(enumerate(first)), 1
            todo = [r for r in todo if self._retry(rows[r], results[r], level)]
        while todo:
            groups: dict[tuple[DecodingOptions, int], list[int]] = {}
            for r in todo:  # rows decode together when the loop's settings are one
                row = rows[r]
                opts = row.input.options.decoding_options(
                    row.input.options.temperatures[level], None, row.language or row.input.language
                )
                groups.setdefault((opts, len(row.prompt)), []).append(r)
            for (opts, _), members in groups.items():
                parts = [[r] for r in members] if self._sequential else [members]
                for part in parts:
                    feats = self.session.take(features, np.array(part))
                    out = decode(
                        self.session,
                        feats,
                        self.tokenizer,
                        opts,
                        prompts=[rows[r].prompt for r in part],
                    )
                    for r, res in zip(part, out):
                        results[r] = res
            level += 1
            todo = [r for r in todo if self._retry(rows[r], results[r], level)]
        return [results[r] for r in range(len(rows))]

    @staticmethod
    def _retry(row: Row, result: DecodingResult, level: int) -> bool:
        """Whether a row's result fails the quality checks and a next temperature is left."""
        options = row.input.options
        return level < len(options.temperatures) and needs_fallback(result, options)

    def step(self, scheduler: Any) -> list[Any]:
        """One batch from the scheduler, run and handed back: the inputs now finished."""
        batch = scheduler.schedule()
        return scheduler.update(batch, self.run(batch.rows) if batch.rows else [])

    @property
    def _sequential(self) -> bool:
        return self.batch.decoder == "sequential" or not self.caps.batched_decoder


def first_window_language(
    session: Session, tokenizer: Tokenizer, samples: np.ndarray
) -> LanguageGuess:
    """The language of the first 30 s of a 16 kHz signal and its probability ('en' with
    probability 1 on an English-only model): what the sequential path decodes a file in."""
    from runtime.audio.constants import N_FRAMES, N_SAMPLES
    from runtime.audio.mel import log_mel_spectrogram, pad_or_trim

    if not tokenizer.multilingual:
        return LanguageGuess("en", 1.0)
    mel = log_mel_spectrogram(samples[:N_SAMPLES], n_mels=session.model.dims.n_mels)
    features = session.encode(pad_or_trim(mel, N_FRAMES)[None])
    codes, probs = detect_language(session, features, tokenizer)
    return LanguageGuess(codes[0], probs[0][codes[0]])
