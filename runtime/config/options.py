"""Options for one transcription from the settings, the profile and what a caller gave, checked
against the model. Every entry point goes through here: a CLI flag, a keyword of
``Runtime.transcribe`` or a server field overrides only what it was given; the rest comes from
the settings (TOML, ``RUNTIME_*``), whose defaults are ``TranscribeOptions``' and ``BatchOptions``'.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from runtime.backend import Capabilities
from runtime.config.batchsize import available_memory, fit_batch
from runtime.config.profiles import BatchingConfig
from runtime.config.settings import Settings
from runtime.errors import RuntimeInputError, UnsupportedRequestError
from runtime.model.tokenizer import normalize_language
from runtime.model.weights import WhisperModel
from runtime.pipeline.options import BatchOptions, Chunking, TranscribeOptions
from runtime.words.aligner import check_word_timestamps

log = logging.getLogger(__name__)


def settings_options(settings: Settings) -> TranscribeOptions:
    """The transcription defaults of these settings (their ``[decoding]`` section)."""
    d = settings.decoding
    return TranscribeOptions(
        beam_size=d.beam_size,
        best_of=d.best_of,
        temperatures=tuple(d.temperatures),
        condition_on_previous_text=d.condition_on_previous_text,
    )


def transcribe_options(
    settings: Settings,
    model: WhisperModel,
    capabilities: Capabilities,
    backend: str,
    options: TranscribeOptions | None,
    language: str | None,
    task: str,
    overrides: dict[str, Any],
) -> TranscribeOptions:
    """``options`` (default: the settings') with ``language``, ``task`` and any
    ``TranscribeOptions`` field in ``overrides`` (``temperature`` is a single temperature or a
    ladder), checked against the model: ``RuntimeInputError`` when they cannot apply."""
    options = options or settings_options(settings)
    overrides = dict(overrides)
    if "temperature" in overrides:
        t = overrides.pop("temperature")
        overrides["temperatures"] = tuple(t) if isinstance(t, (list, tuple)) else (float(t),)
    try:
        language = normalize_language(language or options.language)
        options = dataclasses.replace(options, language=language, task=task, **overrides)
    except (TypeError, ValueError) as exc:
        raise RuntimeInputError(str(exc)) from exc
    if not model.is_multilingual:
        if options.language not in (None, "en"):
            raise UnsupportedRequestError(
                f"model {model.name} is English-only and cannot transcribe "
                f"language {options.language!r}; use a multilingual model such as 'base'"
            )
        if options.task == "translate":
            raise UnsupportedRequestError(
                f"model {model.name} is English-only and cannot translate; "
                "use a multilingual model such as 'base'"
            )
    if options.word_timestamps:
        check_word_timestamps(capabilities, backend)
    return options


def batch_options(
    settings: Settings,
    profile: BatchingConfig | None,
    batch_size: int | None = None,
    chunking: Chunking | None = None,
    row: int | None = None,
) -> BatchOptions:
    """How windows are grouped: the caller's arguments, then the settings, then the profile's,
    then ``BatchOptions``' defaults. A size from the profile or the defaults is kept within the
    profile's floor and ceiling and to the rows of ``row`` bytes that memory holds
    (``runtime.config.batchsize``); one the caller or the settings ask for is taken as is."""
    default = BatchOptions()
    size = batch_size or settings.batch.batch_size
    if not size:
        size = (profile.batch_size if profile else None) or default.batch_size
        fit = fit_batch(
            size,
            row or 0,
            available_memory() if row else None,
            profile.min_batch_size if profile else None,
            profile.max_batch_size if profile else None,
        )
        if fit.reason:
            log.info("batch size %d, not %d: %s", fit.size, size, fit.reason)
        size = fit.size
    decoder = settings.batch.decoder or (profile.decoder if profile else None) or default.decoder
    try:
        return BatchOptions(
            batch_size=size,
            decoder=decoder,
            chunking=chunking or settings.batch.chunking or default.chunking,
        )
    except ValueError as exc:
        raise RuntimeInputError(str(exc)) from exc
