"""The Python API: ``Runtime().transcribe("talk.flac")``.

A ``Runtime`` owns its plugins, its model and its backend session (no globals): build one and
reuse it; the model is read and loaded on first use.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from runtime.audio.decode import SAMPLE_RATE, load_audio
from runtime.backend import Capabilities, LoadOptions, Session
from runtime.pipeline.source import BatchOptions, Batcher
from runtime.decoding import detect_language
from runtime.errors import BackendUnavailableError, RuntimeInputError, UnsupportedRequestError
from runtime.decoding.language import LanguageGuess
from runtime.audio.mel import N_FRAMES, log_mel_spectrogram, pad_or_trim
from runtime.model.weights import WhisperModel
from runtime.plugins import Plugins
from runtime.output.results import RunInfo, Segment, Transcription
from runtime.config.selection import Selection, select_profile
from runtime.config.settings import Settings
from runtime.model.tokenizer import Tokenizer, load_tokenizer, normalize_language
from runtime.pipeline.sequential import TranscribeOptions, transcribe_sequential
from runtime.words.aligner import WordAligner, check_word_timestamps
from runtime.output.writers import segment_text


class Runtime:
    """Transcription on the best profile for this machine (or the one asked for).

    ``profile``, ``backend``, ``precision`` and ``strict`` override the settings; an explicit
    ``backend`` bypasses profile selection (useful for tests and comparisons)."""

    def __init__(self, model: str | Path | WhisperModel | None = None, *,
                 profile: str | None = None, backend: str | None = None,
                 precision: str | None = None, strict: bool | None = None,
                 backend_options: dict[str, Any] | None = None,
                 settings: Settings | None = None, plugins: Plugins | None = None) -> None:
        settings = settings or Settings()
        changes = {k: v for k, v in dict(profile=profile, backend=backend, precision=precision,
                                         strict=strict).items() if v is not None}
        self.settings = settings.model_copy(update=changes)
        self.plugins = plugins or Plugins()
        self.model_spec = model if model is not None else self.settings.model
        self._backend_options = dict(backend_options or {})
        self._selection: Selection | None = None
        self._session: Session | None = None
        self._capabilities = Capabilities()
        self._tokenizer: Tokenizer | None = None

    # -- selection ------------------------------------------------------------------------------
    @property
    def selection(self) -> Selection | None:
        """The chosen profile (None when a backend was forced), selected once on first use."""
        if self._selection is None and self.settings.backend is None:
            from runtime.hardware import run_probes
            from runtime.config.profiles import load_profiles

            dirs = self.plugins.profile_dirs() + list(self.settings.profile_dirs)
            report = run_probes(self.settings.hardware_root, self.plugins.probes())
            self._selection = select_profile(load_profiles(dirs), report, self.plugins.backends(),
                                             self.settings.profile, self.settings.strict,
                                             self.settings.emulate)
        return self._selection

    @property
    def backend_name(self) -> str:
        return self.settings.backend or self.selection.backend

    def _load_options(self) -> LoadOptions:
        options = dict(self.selection.profile.backend_options) if self.selection else {}
        options.update(self._backend_options)
        precision = self.settings.precision or options.pop("precision", None)
        options.pop("precision", None)
        device = options.pop("device", None)
        source = self.selection.profile.source if self.selection else None
        return LoadOptions(precision=precision or "fp32", device=device, options=options,
                           emulate=bool(self.selection and self.selection.emulated),
                           strict=self.settings.strict,
                           profile_dir=str(source.parent) if source else None)

    # -- loading --------------------------------------------------------------------------------
    def _read_model(self) -> WhisperModel:
        if isinstance(self.model_spec, WhisperModel):
            return self.model_spec
        from runtime.model.registry import resolve_model

        return resolve_model(str(self.model_spec), readers=self.plugins.model_readers())

    def _backend(self):
        backends = self.plugins.backends()
        if self.backend_name not in backends:
            raise BackendUnavailableError(
                f"unknown backend {self.backend_name!r}; registered: {', '.join(sorted(backends))}")
        backend = backends[self.backend_name]
        availability = backend.available()
        if not availability:
            raise BackendUnavailableError(
                f"backend {self.backend_name!r} is not available here: {availability.reason}")
        return backend

    @property
    def session(self) -> Session:
        if self._session is None:
            backend = self._backend()
            self._session = backend.load(self._read_model(), self._load_options())
            # a session may narrow the backend's capabilities (e.g. a static-shape graph)
            self._capabilities = getattr(self._session, "capabilities", backend.capabilities)
        return self._session

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            model = self.session.model
            if model.tokenizer_path is None:
                raise RuntimeInputError(f"model {model.name} has no tokenizer.json")
            self._tokenizer = load_tokenizer(model.tokenizer_path, model.is_multilingual,
                                             model.dims.num_languages)
        return self._tokenizer

    # -- transcription --------------------------------------------------------------------------
    def transcribe(self, audio: str | Path | bytes | np.ndarray, *,
                   language: str | None = None, task: str = "transcribe",
                   options: TranscribeOptions | None = None,
                   batch_size: int | None = None, chunking: str | None = None,
                   sequential: bool = False,
                   progress: Callable[[float], None] | None = None,
                   **overrides: Any) -> Transcription:
        """Transcribe one file, bytes or 16 kHz float32 array.

        By default chunks are cut at silences and batched (``batch_size`` from the profile);
        ``sequential=True`` runs the reference long-form path (30 s windows, seek). Any
        ``TranscribeOptions`` field may be given as a keyword (``beam_size=5``,
        ``temperature=0.0`` for a single temperature, ``initial_prompt=...``)."""
        options = self._options(options, language, task, overrides)
        session, tokenizer = self.session, self.tokenizer
        t0 = time.perf_counter()
        if sequential:
            samples = load_audio(audio, allow_truncated=options.allow_truncated)
            timings = {"decode_audio": time.perf_counter() - t0}
            lang, lang_prob = self._language(samples, options)
            aligner = (WordAligner(session, tokenizer, self.capabilities, self.backend_name)
                       if options.word_timestamps else None)
            segments = transcribe_sequential(session, tokenizer, samples, options, lang, progress,
                                             aligner)
            duration = len(samples) / SAMPLE_RATE
        else:
            batcher = Batcher(session, tokenizer, self._capabilities, options,
                              self.batch_options(batch_size, chunking), options.language,
                              progress)
            segments = batcher.transcribe(audio)
            lang, lang_prob = batcher.language, batcher.language_probability
            duration = batcher.duration
            timings = dict(batcher.clock.totals)
        timings["total"] = time.perf_counter() - t0
        return self.make_transcription(segments, lang, duration, timings, lang_prob)

    def transcribe_many(self, inputs: Iterable[str | Path | bytes | np.ndarray], *,
                        language: str | None = None, task: str = "transcribe",
                        options: TranscribeOptions | None = None,
                        batch_size: int | None = None, in_flight: int | None = None,
                        **overrides: Any) -> Iterator[ManyResult]:
        """Transcribe many inputs together: chunks of all of them share encoder and decoder
        batches, while the next inputs are decoded, VAD'd and mel'd in a preparing thread.

        Yields one ``ManyResult`` per input, in input order, as soon as that input (and every one
        before it) is done. An input that fails yields its error; the others go on. At most
        ``in_flight`` inputs (default 4 x batch size) are held at once, so memory stays flat."""
        from runtime.pipeline.engine import Engine

        opts = self._options(options, language, task, overrides)
        engine = Engine(self, batch_size=batch_size, max_wait_s=0.0, max_queue=10**9)
        limit = in_flight or 4 * engine.batch.batch_size
        pending: deque[tuple[int, Any, Any]] = deque()
        finished = False
        try:
            for index, item in enumerate(inputs):
                pending.append((index, item, engine.submit(item, options=opts)))
                while len(pending) >= limit or (pending and pending[0][2].done()):
                    yield _many_result(*pending.popleft())
            while pending:
                yield _many_result(*pending.popleft())
            finished = True
        finally:  # a consumer that stops early cancels what is left
            engine.close(wait=finished)

    def make_transcription(self, segments: list[Segment], language: str | None,
                           duration: float, timings: dict[str, float],
                           language_probability: float | None = None) -> Transcription:
        session = self.session
        return Transcription(
            text=segment_text(segments), segments=tuple(segments), language=language or "en",
            duration=duration, language_probability=language_probability,
            run=RunInfo(model=session.model.name, backend=self.backend_name,
                        device=session.device, detail=session.describe(),
                        profile=self.selection.profile.name if self.selection else None),
            timings=timings)

    @property
    def capabilities(self) -> Capabilities:
        """What the loaded session can do (a session may narrow its backend's capabilities)."""
        self.session
        return self._capabilities

    def transcribe_options(self, options: TranscribeOptions | None = None,
                           language: str | None = None, task: str = "transcribe",
                           overrides: dict[str, Any] | None = None) -> TranscribeOptions:
        """Options checked against the model (``RuntimeInputError`` when they cannot apply)."""
        return self._options(options, language, task, dict(overrides or {}))

    def batch_options(self, batch_size: int | None = None,
                      chunking: str | None = None) -> BatchOptions:
        """Batcher settings: explicit arguments, then settings, then the profile's."""
        profile = self.selection.profile.batcher if self.selection else None
        size = batch_size or self.settings.batch.batch_size or (profile.batch_size if profile else 8)
        decoder = self.settings.batch.decoder or (profile.decoder if profile else "batched")
        try:
            return BatchOptions(batch_size=size, decoder=decoder,
                                chunking=chunking or self.settings.batch.chunking)
        except ValueError as exc:
            raise RuntimeInputError(str(exc)) from exc

    def _options(self, options: TranscribeOptions | None, language: str | None, task: str,
                 overrides: dict[str, Any]) -> TranscribeOptions:
        if options is None:
            d = self.settings.decoding
            options = TranscribeOptions(
                beam_size=d.beam_size, best_of=d.best_of, temperatures=d.temperatures,
                condition_on_previous_text=d.condition_on_previous_text)
        if "temperature" in overrides:
            t = overrides.pop("temperature")
            overrides["temperatures"] = tuple(t) if isinstance(t, (list, tuple)) else (float(t),)
        try:
            language = normalize_language(language or options.language)
            options = dataclasses.replace(options, language=language, task=task, **overrides)
        except (TypeError, ValueError) as exc:
            raise RuntimeInputError(str(exc)) from exc
        model = self.session.model
        if not model.is_multilingual:
            if options.language not in (None, "en"):
                raise UnsupportedRequestError(
                    f"model {model.name} is English-only and cannot transcribe "
                    f"language {options.language!r}; use a multilingual model such as 'base'")
            if options.task == "translate":
                raise UnsupportedRequestError(
                    f"model {model.name} is English-only and cannot translate; "
                    "use a multilingual model such as 'base'")
        if options.word_timestamps:
            check_word_timestamps(self.capabilities, self.backend_name)
        return options

    def _language(self, samples: np.ndarray,
                  options: TranscribeOptions) -> tuple[str, float | None]:
        """The forced language, English for English-only models, else detected on the first 30 s."""
        if options.language:
            return options.language, None
        if not self.tokenizer.multilingual:
            return "en", None
        guess = self.detect_language(samples)
        return guess.language, guess.probability

    def detect_language(self, audio: str | Path | bytes | np.ndarray) -> LanguageGuess:
        """The spoken language of the first 30 s of ``audio`` and its probability ('en' with
        probability 1 on an English-only model), as the sequential path detects it."""
        if not self.tokenizer.multilingual:
            return LanguageGuess("en", 1.0)
        samples = audio if isinstance(audio, np.ndarray) else load_audio(audio)
        mel = log_mel_spectrogram(samples[: N_FRAMES * 160], n_mels=self.session.model.dims.n_mels)
        features = self.session.encode(pad_or_trim(mel, N_FRAMES)[None])
        codes, probs = detect_language(self.session, features, self.tokenizer)
        return LanguageGuess(codes[0], probs[0][codes[0]])


@dataclass(frozen=True)
class ManyResult:
    """One input of ``transcribe_many``: its position, what it was, and its result or error."""

    index: int
    source: Any
    transcription: Transcription | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _many_result(index: int, source: Any, future: Any) -> ManyResult:
    try:
        return ManyResult(index, source, future.result())
    except Exception as exc:  # noqa: BLE001 - one input's failure never stops the others
        return ManyResult(index, source, error=exc)
