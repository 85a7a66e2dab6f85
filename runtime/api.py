"""The Python API: ``Runtime().transcribe("talk.flac")``.

A ``Runtime`` owns its plugins, its model and its backend session (no globals): build one and
reuse it; the model is read and loaded on first use (or by ``load()``). It is a facade: the
profile comes from ``runtime.config.selection``, options from ``runtime.config.options``, and the
work is done by ``runtime.pipeline`` (the scheduler and runner, the sequential path, the engine).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.audio.constants import SAMPLE_RATE
from runtime.audio.decode import load_audio
from runtime.backend import Backend, Capabilities, LoadOptions, Session, check_precision
from runtime.config import options as config_options
from runtime.config.batchsize import row_bytes
from runtime.config.selection import Selection, select_profile
from runtime.config.settings import Settings
from runtime.decoding.language import LanguageGuess
from runtime.errors import BackendUnavailableError, RuntimeInputError
from runtime.model.tokenizer import Tokenizer, load_tokenizer
from runtime.model.weights import WhisperModel
from runtime.output.results import RunInfo, Segment, Transcription
from runtime.output.writers import segment_text
from runtime.pipeline.continuous import make_runner
from runtime.pipeline.engine import Engine, LoadedModel
from runtime.pipeline.memory import release_free_memory
from runtime.pipeline.options import BatchOptions, Chunking, TranscribeOptions
from runtime.pipeline.runner import first_window_language
from runtime.pipeline.scheduler import Scheduler, run_to_completion
from runtime.pipeline.sequential import transcribe_sequential
from runtime.pipeline.source import SourceRun
from runtime.plugins import Plugins


class Runtime:
    """Transcription on the best profile for this machine (or the one asked for).

    ``profile``, ``backend``, ``precision`` and ``strict`` override the settings; an explicit
    ``backend`` bypasses profile selection (useful for tests and comparisons)."""

    def __init__(
        self,
        model: str | Path | WhisperModel | None = None,
        *,
        profile: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        strict: bool | None = None,
        backend_options: dict[str, Any] | None = None,
        settings: Settings | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        settings = settings or Settings()
        changes = {
            k: v
            for k, v in dict(
                profile=profile, backend=backend, precision=precision, strict=strict
            ).items()
            if v is not None
        }
        self.settings = settings.model_copy(update=changes)
        self.plugins = plugins or Plugins()
        self.model_spec = model if model is not None else self.settings.model
        self._backend_options = dict(backend_options or {})
        self._selection: Selection | None = None
        self._session: Session | None = None
        self._tokenizer: Tokenizer | None = None

    # -- selection ------------------------------------------------------------------------------
    @property
    def selection(self) -> Selection | None:
        """The chosen profile (None when a backend was forced), selected once on first use."""
        if self._selection is None and self.settings.backend is None:
            from runtime.config.profiles import load_profiles
            from runtime.hardware import run_probes

            dirs = self.plugins.profile_dirs() + list(self.settings.profile_dirs)
            report = run_probes(self.settings.hardware_root, self.plugins.probes())
            self._selection = select_profile(
                load_profiles(dirs),
                report,
                self.plugins.backends(),
                self.settings.profile,
                self.settings.strict,
                self.settings.emulate,
            )
        return self._selection

    @property
    def backend_name(self) -> str:
        if self.settings.backend is not None:
            return self.settings.backend
        assert self.selection is not None  # selected whenever no backend is forced
        return self.selection.backend

    def _load_options(self) -> LoadOptions:
        options = dict(self.selection.profile.backend_options) if self.selection else {}
        options.update(self._backend_options)
        precision = self.settings.precision or options.pop("precision", None)
        options.pop("precision", None)  # when the settings' precision won
        device = options.pop("device", None)
        source = self.selection.profile.source if self.selection else None
        return LoadOptions(
            precision=precision or "fp32",
            device=device,
            options=options,
            emulate=bool(self.selection and self.selection.emulated),
            strict=self.settings.strict,
            profile_dir=str(source.parent) if source else None,
        )

    # -- loading --------------------------------------------------------------------------------
    def _read_model(self) -> WhisperModel:
        if isinstance(self.model_spec, WhisperModel):
            return self.model_spec
        from runtime.model.registry import resolve_model

        return resolve_model(str(self.model_spec), readers=self.plugins.model_readers())

    def _backend(self) -> Backend:
        backends = self.plugins.backends()
        if self.backend_name not in backends:
            raise BackendUnavailableError(
                f"unknown backend {self.backend_name!r}; registered: {', '.join(sorted(backends))}"
            )
        backend = backends[self.backend_name]
        availability = backend.available()
        if not availability:
            raise BackendUnavailableError(
                f"backend {self.backend_name!r} is not available here: {availability.reason}"
            )
        return backend

    @property
    def session(self) -> Session:
        if self._session is None:
            backend = self._backend()
            options = self._load_options()
            check_precision(backend.capabilities, backend.name, options.precision)
            self._session = backend.load(self._read_model(), options)
            # what loading freed (a model's file read, graphs built in threads) goes back now
            release_free_memory()
        return self._session

    def load(self) -> Runtime:
        """Read and load the model now (a bad model or backend fails here, not at the first
        file), and its tokenizer, which is read while the backend loads (tiny: 56 ms)."""
        if self._session is None and self._tokenizer is None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                tokenizer = pool.submit(_load_tokenizer, self._read_model())
                self.session  # noqa: B018 - the property loads once
                self._tokenizer = tokenizer.result()
        self.session, self.tokenizer  # noqa: B018 - the properties load once
        return self

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.session.model)
        return self._tokenizer

    # -- transcription --------------------------------------------------------------------------
    def transcribe(
        self,
        audio: str | Path | bytes | np.ndarray,
        *,
        language: str | None = None,
        task: str = "transcribe",
        options: TranscribeOptions | None = None,
        batch_size: int | None = None,
        chunking: Chunking | None = None,
        sequential: bool = False,
        progress: Callable[[float], None] | None = None,
        **overrides: Any,
    ) -> Transcription:
        """Transcribe one file, bytes or 16 kHz float32 array.

        By default chunks are cut at silences and batched (``batch_size`` from the profile);
        ``sequential=True`` runs the reference long-form path (30 s windows, seek). Any
        ``TranscribeOptions`` field may be given as a keyword (``beam_size=5``,
        ``temperature=0.0`` for a single temperature, ``initial_prompt=...``)."""
        options = self.transcribe_options(options, language, task, overrides)
        batch = self.batch_options(batch_size, chunking)
        runner = make_runner(self.session, self.tokenizer, self.capabilities, batch)
        t0 = time.perf_counter()
        if sequential:
            samples = load_audio(audio, allow_truncated=options.allow_truncated)
            timings = {"decode_audio": time.perf_counter() - t0}
            guess = self._language(samples, options)
            segments = transcribe_sequential(runner, samples, options, guess.language, progress)
            duration = len(samples) / SAMPLE_RATE
            language, probability = guess.language, guess.probability
        else:
            run = SourceRun(
                self.session, self.tokenizer, options, batch, audio, options.language, progress
            )
            run_to_completion(Scheduler(batch), runner, run)
            segments, duration = run.ordered_segments(), run.duration
            language, probability = run.language, run.language_probability
            timings = run.clock.merged()
        timings = {**timings, **runner.clock.totals, "total": time.perf_counter() - t0}
        return self.make_transcription(segments, language, duration, timings, probability)

    def transcribe_many(
        self,
        inputs: Iterable[str | Path | bytes | np.ndarray],
        *,
        language: str | None = None,
        task: str = "transcribe",
        options: TranscribeOptions | None = None,
        batch_size: int | None = None,
        chunking: Chunking | None = None,
        in_flight: int | None = None,
        **overrides: Any,
    ) -> Iterator[ManyResult]:
        """Transcribe many inputs together: chunks of all of them share encoder and decoder
        batches, while the next inputs are decoded, VAD'd and mel'd in a preparing thread.

        Yields one ``ManyResult`` per input, in input order, as soon as that input (and every one
        before it) is done. An input that fails yields its error; the others go on. At most
        ``in_flight`` inputs (default 4 x batch size) are held at once, so memory stays flat."""
        opts = self.transcribe_options(options, language, task, overrides)
        engine = self.engine(
            batch_size=batch_size, chunking=chunking, max_wait_s=0.0, max_queue=None
        )
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

    def engine(
        self,
        *,
        batch_size: int | None = None,
        chunking: Chunking | None = None,
        max_wait_s: float = 0.05,
        max_queue: int | None = 64,
        cross_request: bool = True,
    ) -> Engine:
        """An ``Engine`` over this runtime's model (the server's, ``transcribe_many``'s): inputs
        submitted from any thread share batches; not started until the first ``submit``."""
        model = LoadedModel(
            self.session,
            self.tokenizer,
            self.capabilities,
            lambda o, lang, task, extra: self.transcribe_options(o, lang, task, extra),
            self.make_transcription,
        )
        return Engine(
            model,
            self.batch_options(batch_size, chunking),
            max_wait_s=max_wait_s,
            max_queue=max_queue,
            cross_request=cross_request,
        )

    def make_transcription(
        self,
        segments: list[Segment],
        language: str | None,
        duration: float,
        timings: dict[str, float],
        language_probability: float | None = None,
    ) -> Transcription:
        session = self.session
        return Transcription(
            text=segment_text(segments),
            segments=tuple(segments),
            language=language or "en",
            duration=duration,
            language_probability=language_probability,
            run=RunInfo(
                model=session.model.name,
                backend=self.backend_name,
                device=session.device,
                detail=session.describe(),
                profile=self.selection.profile.name if self.selection else None,
            ),
            timings=timings,
        )

    @property
    def capabilities(self) -> Capabilities:
        """What the loaded session can do (a session may narrow its backend's capabilities)."""
        return self.session.capabilities

    def transcribe_options(
        self,
        options: TranscribeOptions | None = None,
        language: str | None = None,
        task: str = "transcribe",
        overrides: dict[str, Any] | None = None,
    ) -> TranscribeOptions:
        """Options checked against the model (``RuntimeInputError`` when they cannot apply):
        ``options`` (default: the settings'), then what was given."""
        return config_options.transcribe_options(
            self.settings,
            self.session.model,
            self.capabilities,
            self.backend_name,
            options,
            language,
            task,
            dict(overrides or {}),
        )

    def batch_options(
        self, batch_size: int | None = None, chunking: Chunking | None = None
    ) -> BatchOptions:
        """How windows are grouped: explicit arguments, then settings, then the profile's."""
        profile = self.selection.profile.batcher if self.selection else None
        row = row_bytes(self.session.model.dims) if self.capabilities.host_decoder_state else None
        return config_options.batch_options(self.settings, profile, batch_size, chunking, row)

    def _language(self, samples: np.ndarray, options: TranscribeOptions) -> LanguageGuess:
        """The forced language (probability None), English for English-only models, else
        detected on the first 30 s."""
        if options.language:
            return LanguageGuess(options.language, None)
        if not self.tokenizer.multilingual:
            return LanguageGuess("en", None)
        return first_window_language(self.session, self.tokenizer, samples)

    def detect_language(self, audio: str | Path | bytes | np.ndarray) -> LanguageGuess:
        """The spoken language of the first 30 s of ``audio`` and its probability ('en' with
        probability 1 on an English-only model), as the sequential path detects it."""
        samples = audio if isinstance(audio, np.ndarray) else load_audio(audio)
        return first_window_language(self.session, self.tokenizer, samples)


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


def _load_tokenizer(model: WhisperModel) -> Tokenizer:
    if model.tokenizer_path is None:
        raise RuntimeInputError(f"model {model.name} has no tokenizer.json")
    return load_tokenizer(model.tokenizer_path, model.is_multilingual, model.dims.num_languages)
