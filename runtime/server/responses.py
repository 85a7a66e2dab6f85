"""A ``Transcription`` rendered as OpenAI renders it: json, text, srt, vtt or verbose_json.

verbose_json follows OpenAI's ``TranscriptionVerbose``: task, the language's full English name
in lower case ("english"), duration, text, segments with Whisper's per-segment statistics, and
``words`` when word granularity was asked for. Subtitles come from the runtime's own writers.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from runtime.model.tokenizer import LANGUAGES
from runtime.output.results import Segment, Transcription
from runtime.output.writers import SrtWriter, VttWriter
from runtime.server.request import AudioRequest


def _segment(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def _words(result: Transcription) -> list[dict[str, Any]]:
    return [
        {"word": w.word.strip(), "start": w.start, "end": w.end}
        for s in result.segments
        for w in (s.words or ())
    ]


def language_name(code: str) -> str:
    """'en' -> 'english', as OpenAI names languages; an unknown code is returned as is."""
    return LANGUAGES.get(code, code)


def verbose_json(result: Transcription, request: AudioRequest) -> dict[str, Any]:
    # a translation's text is English whatever was spoken; OpenAI reports "english" for it
    language = "english" if request.task == "translate" else language_name(result.language)
    body: dict[str, Any] = {
        "task": request.task,
        "language": language,
        "duration": result.duration,
        "text": result.text,
    }
    if "segment" in request.granularities:
        body["segments"] = [_segment(s) for s in result.segments]
    if "word" in request.granularities:
        body["words"] = _words(result)
    return body


def render(result: Transcription, request: AudioRequest) -> Response:
    """The HTTP response for ``request.response_format``."""
    fmt = request.response_format
    if fmt == "json":
        return JSONResponse({"text": result.text})
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(result, request))
    if fmt == "text":
        return PlainTextResponse(result.text + "\n")
    writer = SrtWriter() if fmt == "srt" else VttWriter()
    return PlainTextResponse(writer.to_string(result))
