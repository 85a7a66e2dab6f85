"""The Python API: ``Runtime().transcribe("talk.flac")``.

A ``Runtime`` owns its plugins, its model and its backend session (no globals): build one and
reuse it; the model is read and loaded on first use.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.audio import SAMPLE_RATE, load_audio
from runtime.backend import LoadOptions, Session
from runtime.decoding import detect_language
from runtime.errors import BackendUnavailableError, RuntimeInputError
from runtime.mel import N_FRAMES, log_mel_spectrogram, pad_or_trim
from runtime.model import WhisperModel
from runtime.plugins import Plugins
from runtime.results import RunInfo, Transcription
from runtime.tokenizer import Tokenizer, load_tokenizer, normalize_language
from runtime.transcribe import TranscribeOptions, transcribe_sequential
from runtime.writers import segment_text

DEFAULT_MODEL = "tiny.en"


class Runtime:
    def __init__(self, model: str | Path | WhisperModel = DEFAULT_MODEL, *,
                 backend: str = "cpu", precision: str = "fp32",
                 backend_options: dict[str, Any] | None = None,
                 plugins: Plugins | None = None) -> None:
        self.plugins = plugins or Plugins()
        self.model_spec = model
        self.backend_name = backend
        self.load_options = LoadOptions(precision=precision, options=dict(backend_options or {}))
        self._session: Session | None = None
        self._tokenizer: Tokenizer | None = None

    # -- loading --------------------------------------------------------------------------------
    def _read_model(self) -> WhisperModel:
        if isinstance(self.model_spec, WhisperModel):
            return self.model_spec
        from runtime.models import resolve_model

        return resolve_model(str(self.model_spec))

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
            self._session = backend.load(self._read_model(), self.load_options)
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
                   progress: Callable[[float], None] | None = None,
                   **overrides: Any) -> Transcription:
        """Transcribe one file, bytes or 16 kHz float32 array.

        Any ``TranscribeOptions`` field may be given as a keyword (``beam_size=5``,
        ``temperature=0.0`` for a single temperature, ``initial_prompt=...``)."""
        options = self._options(options, language, task, overrides)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        samples = load_audio(audio)
        timings["decode_audio"] = time.perf_counter() - t0
        session, tokenizer = self.session, self.tokenizer
        t1 = time.perf_counter()
        lang, lang_prob = self._language(samples, options)
        segments = transcribe_sequential(session, tokenizer, samples, options, lang, progress)
        timings["transcribe"] = time.perf_counter() - t1
        return Transcription(
            text=segment_text(segments), segments=tuple(segments), language=lang,
            duration=len(samples) / SAMPLE_RATE, language_probability=lang_prob,
            run=RunInfo(model=session.model.name, backend=self.backend_name,
                        device=session.device, detail=session.describe()),
            timings=timings)

    def _options(self, options: TranscribeOptions | None, language: str | None, task: str,
                 overrides: dict[str, Any]) -> TranscribeOptions:
        options = options or TranscribeOptions()
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
                raise RuntimeInputError(
                    f"model {model.name} is English-only and cannot transcribe "
                    f"language {options.language!r}; use a multilingual model such as 'base'")
            if options.task == "translate":
                raise RuntimeInputError(
                    f"model {model.name} is English-only and cannot translate; "
                    "use a multilingual model such as 'base'")
        return options

    def _language(self, samples: np.ndarray,
                  options: TranscribeOptions) -> tuple[str, float | None]:
        """The forced language, English for English-only models, else detected on the first 30 s."""
        if options.language:
            return options.language, None
        if not self.tokenizer.multilingual:
            return "en", None
        mel = log_mel_spectrogram(samples[: N_FRAMES * 160], n_mels=self.session.model.dims.n_mels)
        features = self.session.encode(pad_or_trim(mel, N_FRAMES)[None])
        codes, probs = detect_language(self.session, features, self.tokenizer)
        return codes[0], probs[0][codes[0]]
