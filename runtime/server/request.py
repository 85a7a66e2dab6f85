"""OpenAI's audio request fields, validated into one frozen ``AudioRequest``.

Every wrong value is a 400 naming the field (``param``), as OpenAI answers it; fields OpenAI's
clients may send that this server does not use (``include``, ``chunking_strategy``...) are
ignored rather than refused, so newer clients keep working. Two fields are this server's own:
``allow_truncated=true`` transcribes what a truncated upload holds instead of refusing it, and
``priority=low`` lets a batch job yield to other requests and live sessions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.model.tokenizer import normalize_language
from runtime.pipeline.options import Priority
from runtime.server.errors import bad_request
from runtime.server.upload import FILE_FIELD, Upload

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("segment", "word")
GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")


@dataclass(frozen=True)
class AudioRequest:
    task: str  # "transcribe" or "translate"
    model: str  # the served model's id (aliases resolved)
    language: str | None = None  # a code ('de'); None = detect
    prompt: str | None = None
    response_format: str = "json"
    temperature: float | None = None  # None (or 0 from the client) = Whisper's fallback ladder
    granularities: frozenset[str] = frozenset({"segment"})
    allow_truncated: bool = False  # this server's own field: transcribe a truncated file's start
    stream: bool = False  # Server-Sent Events, segment by segment (``runtime.server.streaming``)
    priority: int = Priority.NORMAL  # this server's own field: "low" yields to other requests

    def engine_overrides(self) -> dict[str, Any]:
        """Keywords for ``Engine.submit``: only what the client asked for."""
        overrides: dict[str, Any] = {}
        if self.prompt:
            overrides["initial_prompt"] = self.prompt
        if self.temperature:  # OpenAI: 0 means "raise the temperature automatically"
            overrides["temperature"] = self.temperature
        if "word" in self.granularities:
            overrides["word_timestamps"] = True
        if self.allow_truncated:
            overrides["allow_truncated"] = True
        return overrides


def _one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"field {name!r} was given {len(values)} times; give it once", param=name)
    return values[0]


def _flag(value: str | None, name: str) -> bool:
    """A boolean form field: true/1/yes/on or false/0/no/off (absent or empty: false)."""
    text = (value or "").strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("", "false", "0", "no", "off"):
        return False
    raise bad_request(f"{name} must be true or false, not {value!r}", param=name)


def _temperature(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        t = float(value)
    except ValueError:
        raise bad_request(
            f"temperature must be a number between 0 and 1, not {value!r}", param="temperature"
        ) from None
    if not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise bad_request(f"temperature must be between 0 and 1, not {value}", param="temperature")
    return t


def _language(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return normalize_language(value.strip())
    except ValueError as exc:
        raise bad_request(str(exc), param="language") from None


def _granularities(fields: dict[str, list[str]], response_format: str) -> frozenset[str]:
    values = [v.strip() for name in GRANULARITY_FIELDS for v in fields.get(name, [])]
    for value in values:
        if value not in GRANULARITIES:
            raise bad_request(
                f"timestamp_granularities[] must be 'segment' or 'word', not {value!r}",
                param="timestamp_granularities",
            )
    if "word" in values and response_format != "verbose_json":
        raise bad_request(
            "word timestamps need response_format 'verbose_json'", param="timestamp_granularities"
        )
    return frozenset(values) or frozenset({"segment"})


def parse_audio_request(
    upload: Upload, task: str, resolve_model: Callable[[str], str]
) -> AudioRequest:
    """Validate the form fields of a transcription (``task="transcribe"``) or translation.

    ``resolve_model`` maps the client's model name to a served model id, or raises."""
    fields = upload.fields
    if upload.path is None:
        raise bad_request(
            "no audio file: send it as the multipart file field 'file'", param=FILE_FIELD
        )
    if upload.size == 0:
        raise bad_request("the uploaded audio file is empty", param=FILE_FIELD, code="empty_file")
    model = _one(fields, "model")
    if not model or not model.strip():
        raise bad_request("field 'model' is required (for example 'whisper-1')", param="model")
    stream = _flag(_one(fields, "stream"), "stream")
    priority = (_one(fields, "priority") or "normal").strip().lower()
    if priority not in ("normal", "low"):
        raise bad_request(
            f"priority must be 'normal' or 'low' (a request may lower its own), not {priority!r}",
            param="priority",
        )
    response_format = (_one(fields, "response_format") or "json").strip()
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not "
            f"{response_format!r}",
            param="response_format",
        )
    return AudioRequest(
        task=task,
        model=resolve_model(model.strip()),
        language=_language(_one(fields, "language")),
        prompt=_one(fields, "prompt") or None,
        response_format=response_format,
        temperature=_temperature(_one(fields, "temperature")),
        granularities=_granularities(fields, response_format),
        allow_truncated=_flag(_one(fields, "allow_truncated"), "allow_truncated"),
        stream=stream,
        priority=Priority.LOW if priority == "low" else Priority.NORMAL,
    )
