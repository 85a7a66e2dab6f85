"""OpenAI's Realtime transcription session object: validated ``session.update``s merged into the
effective session (echoed whole in ``session.updated``), its ``LiveOptions``, and the input
audio decoded to 16 kHz float32.

A wrong value raises ``RealtimeError`` with OpenAI's code and the parameter's dotted path; the
whole update is then refused, as OpenAI does.
"""

from __future__ import annotations

import base64
import binascii
import copy
import time
from typing import Any

import numpy as np

from runtime.live import LiveOptions, TurnDetection
from runtime.live.events import new_id

PCM_RATE = 24000  # OpenAI's audio/pcm: 16-bit little-endian mono at 24 kHz
G711_RATE = 8000  # audio/pcmu and audio/pcma
FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
SESSION_KEYS = {"type", "audio", "include", "id", "object", "expires_at"}
INPUT_KEYS = {"format", "transcription", "turn_detection", "noise_reduction"}
TURN_KEYS = {
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "create_response",
    "interrupt_response",
    "idle_timeout_ms",
}


class RealtimeError(Exception):
    """A client event refused: OpenAI's ``error`` event fields."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def default_session(max_session_s: float) -> dict[str, Any]:
    """The session as created: transcription null, server VAD with OpenAI's documented values."""
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": new_id("sess"),
        "expires_at": int(time.time() + max_session_s),
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": PCM_RATE},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                },
            }
        },
        "include": None,
    }


def _unknown(given: dict, allowed: set[str], path: str) -> None:
    for key in given:
        if key not in allowed:
            raise RealtimeError(
                f"Unknown parameter: '{path}.{key}'.", "unknown_parameter", f"{path}.{key}"
            )


def _object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise RealtimeError(f"Invalid type for '{path}': expected an object.", "invalid_type", path)
    return value


def merge_update(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """The session after ``update`` (a ``session.update``'s ``session``); ``current`` is
    unchanged when the update is refused."""
    update = _object(update, "session")
    _unknown(update, SESSION_KEYS, "session")
    if update.get("type", "transcription") != "transcription":
        raise RealtimeError(
            f"Invalid value: {update.get('type')!r}. This endpoint serves transcription "
            "sessions only ('transcription').",
            "invalid_value",
            "session.type",
        )
    session = copy.deepcopy(current)
    if "include" in update:
        session["include"] = update["include"]
    audio = _object(update.get("audio", {}), "session.audio")
    _unknown(audio, {"input"}, "session.audio")
    given = _object(audio.get("input", {}), "session.audio.input")
    _unknown(given, INPUT_KEYS, "session.audio.input")
    target = session["audio"]["input"]
    if "format" in given:
        target["format"] = _format(given["format"])
    if "transcription" in given:
        target["transcription"] = _transcription(given["transcription"])
    if "turn_detection" in given:
        target["turn_detection"] = _turns(given["turn_detection"])
    if "noise_reduction" in given:  # accepted and echoed; Whisper needs none
        target["noise_reduction"] = given["noise_reduction"]
    return session


def _format(value: Any) -> dict:
    path = "session.audio.input.format"
    fmt = _object(value, path)
    kind = fmt.get("type")
    if kind not in FORMATS:
        raise RealtimeError(
            f"Invalid value: {kind!r}. Supported values are: {', '.join(FORMATS)}.",
            "invalid_value",
            path + ".type",
        )
    if kind == "audio/pcm":
        rate = fmt.get("rate", PCM_RATE)
        if rate != PCM_RATE:
            raise RealtimeError(
                f"Invalid 'rate': {rate!r}. Only 24000 (24 kHz) is supported for audio/pcm.",
                "integer_below_min_value" if isinstance(rate, int) else "invalid_value",
                path + ".rate",
            )
        return {"type": kind, "rate": PCM_RATE}
    return {"type": kind}


def _transcription(value: Any) -> dict | None:
    if value is None:
        return None
    path = "session.audio.input.transcription"
    given = _object(value, path)
    for key in ("model", "language", "prompt"):
        if given.get(key) is not None and not isinstance(given[key], str):
            param = f"{path}.{key}"
            raise RealtimeError(f"Invalid type for '{param}'.", "invalid_type", param)
    return {
        "model": given.get("model"),
        "language": given.get("language") or None,
        "prompt": given.get("prompt") or None,
    }


def _turns(value: Any) -> dict | None:
    if value is None:
        return None
    path = "session.audio.input.turn_detection"
    given = _object(value, path)
    _unknown(given, TURN_KEYS, path)
    kind = given.get("type", "server_vad")
    if kind != "server_vad":
        raise RealtimeError(
            f"Invalid value: {kind!r}. This server supports 'server_vad' (or null).",
            "invalid_value",
            path + ".type",
        )
    turns = {
        "type": kind,
        "threshold": given.get("threshold", 0.5),
        "prefix_padding_ms": given.get("prefix_padding_ms", 300),
        "silence_duration_ms": given.get("silence_duration_ms", 500),
    }
    try:
        TurnDetection(
            float(turns["threshold"]),
            int(turns["prefix_padding_ms"]),
            int(turns["silence_duration_ms"]),
        )
    except (TypeError, ValueError) as exc:
        raise RealtimeError(f"Invalid turn_detection: {exc}.", "invalid_value", path) from None
    return turns


def live_options(session: dict[str, Any], base: LiveOptions) -> LiveOptions:
    """What the session asks of the live transcriber (``base`` for the rest)."""
    given = session["audio"]["input"]
    turns = given["turn_detection"]
    detection = (
        TurnDetection(
            float(turns["threshold"]),
            int(turns["prefix_padding_ms"]),
            int(turns["silence_duration_ms"]),
        )
        if turns is not None
        else None
    )
    transcription = given["transcription"] or {}
    return LiveOptions(
        turn_detection=detection,
        partials=base.partials,
        partial_interval_ms=base.partial_interval_ms,
        final_tail_ms=base.final_tail_ms,
        max_turn_s=base.max_turn_s,
        cut_search_s=base.cut_search_s,
        context_words=base.context_words,
        language=transcription.get("language") or base.language,
        prompt=transcription.get("prompt") or base.prompt,
    )


# -- audio ----------------------------------------------------------------------------------
def decode_append(audio: Any) -> bytes:
    if not isinstance(audio, str):
        raise RealtimeError("'audio' must be a base64 string.", "invalid_type", "audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeError("'audio' is not valid base64.", "invalid_value", "audio") from None


def _ulaw(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8)
    exponent, mantissa = (u >> 4) & 7, u & 15
    magnitude = (((mantissa.astype(np.int32) << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.float32) / 32768.0


def _alaw(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, np.uint8) ^ 0x55
    exponent, mantissa = (a >> 4) & 7, (a & 15).astype(np.int32)
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.float32) / 32768.0


class AudioDecoder:
    """One session's input audio to 16 kHz float32, resampled with state carried across
    appends (so pieces join without clicks)."""

    def __init__(self, fmt: dict[str, Any]) -> None:
        import soxr

        self.kind = fmt["type"]
        rate = PCM_RATE if self.kind == "audio/pcm" else G711_RATE
        self.rate = rate
        self._odd = b""  # a PCM16 sample split across appends
        self._resampler = soxr.ResampleStream(rate, 16000, 1, dtype="float32")

    def samples(self, data: bytes) -> np.ndarray:
        if self.kind == "audio/pcm":
            data, self._odd = self._odd + data, b""
            if len(data) % 2:
                data, self._odd = data[:-1], data[-1:]
            audio = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        elif self.kind == "audio/pcmu":
            audio = _ulaw(data)
        else:
            audio = _alaw(data)
        return self._resampler.resample_chunk(audio)

    def seconds(self, data: bytes) -> float:
        """Seconds of audio in ``data`` (for the rate limit)."""
        width = 2 if self.kind == "audio/pcm" else 1
        return len(data) / width / self.rate
