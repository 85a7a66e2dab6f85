"""The server's pieces without a socket: settings from flags and environment, field validation,
OpenAI's verbose_json shape, model names."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from runtime.output.results import Segment, Transcription, Word
from runtime.server.errors import APIError
from runtime.server.request import parse_audio_request
from runtime.server.responses import verbose_json
from runtime.server.state import ServedModel, ServerState
from runtime.server.upload import Upload


def _upload(tmp_path: Path, **fields: str | list[str]) -> Upload:
    path = tmp_path / "audio.upload"
    path.write_bytes(b"x" * 10)
    values = {k: v if isinstance(v, list) else [v] for k, v in fields.items()}
    return Upload(fields=values, filename="a.flac", path=path, size=10)


def _resolve(name: str) -> str:
    if name in ("whisper-1", "tiny.en"):
        return "tiny.en"
    raise APIError(404, f"no model {name}", param="model")


def test_serve_flags_override_environment(monkeypatch, capsys):
    captured = {}
    monkeypatch.setattr("runtime.server.serve", lambda settings, **kw: captured.update(s=settings))
    monkeypatch.setenv("RUNTIME_SERVER__API_KEY", "from-env")
    monkeypatch.setenv("RUNTIME_SERVER__MAX_QUEUE", "5")
    monkeypatch.setenv("RUNTIME_SERVER__PORT", "1234")
    assert (
        main(
            [
                "serve",
                "--port",
                "9001",
                "--no-cross-request",
                "--model",
                "tiny.en",
                "--model",
                "base",
                "--max-wait-ms",
                "20",
            ]
        )
        == 0
    )
    server = captured["s"].server
    assert server.port == 9001 and server.max_queue == 5 and not server.cross_request
    assert server.api_key.get_secret_value() == "from-env" and server.max_wait_ms == 20
    assert server.models == ["tiny.en", "base"] and server.host == "127.0.0.1"


def test_serve_bad_settings_and_model_are_one_line(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "port" in capsys.readouterr().err
    assert main(["serve", "--model", "no-such-model", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "Traceback" not in err


def test_fields_become_engine_overrides(tmp_path):
    request = parse_audio_request(
        _upload(
            tmp_path,
            model="whisper-1",
            language="English",
            prompt="Glossary: MLX",
            temperature="0.4",
            response_format="verbose_json",
            **{"timestamp_granularities[]": ["word", "segment"]},
        ),
        "transcribe",
        _resolve,
    )
    assert request.model == "tiny.en" and request.language == "en"
    assert request.engine_overrides() == {
        "initial_prompt": "Glossary: MLX",
        "temperature": 0.4,
        "word_timestamps": True,
    }
    plain = parse_audio_request(
        _upload(tmp_path, model="tiny.en", temperature="0"), "transcribe", _resolve
    )
    assert plain.engine_overrides() == {}  # OpenAI: temperature 0 means the fallback ladder
    assert plain.response_format == "json" and plain.granularities == {"segment"}


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"model": "whisper-1", "temperature": "inf"}, "temperature"),
        ({"model": "whisper-1", "language": "xx"}, "language"),
        ({"model": "whisper-1", "response_format": "JSON"}, "response_format"),
        ({"model": ["whisper-1", "tiny.en"]}, "model"),
        ({"model": "  "}, "model"),
        ({"model": "whisper-1", "stream": "maybe"}, "stream"),
        ({"model": "whisper-1", "priority": "high"}, "priority"),
        ({"model": "whisper-1", "timestamp_granularities": "word"}, "timestamp_granularities"),
    ],
)
def test_bad_fields_name_their_param(tmp_path, fields, param):
    with pytest.raises(APIError) as info:
        parse_audio_request(_upload(tmp_path, **fields), "transcribe", _resolve)
    assert info.value.status == 400 and info.value.param == param


def _result(language: str = "de") -> Transcription:
    words = (Word(0.0, 0.4, " Guten", 0.9), Word(0.4, 0.9, " Tag", 0.8))
    segment = Segment(
        id=0,
        seek=0,
        start=0.0,
        end=0.9,
        text=" Guten Tag",
        tokens=(1, 2),
        temperature=0.0,
        avg_logprob=-0.2,
        compression_ratio=1.1,
        no_speech_prob=0.01,
        words=words,
    )
    return Transcription(text="Guten Tag", segments=(segment,), language=language, duration=1.0)


def test_verbose_json_shape(tmp_path):
    upload = _upload(
        tmp_path,
        model="whisper-1",
        response_format="verbose_json",
        **{"timestamp_granularities[]": "word"},
    )
    request = parse_audio_request(upload, "transcribe", _resolve)
    body = verbose_json(_result(), request)
    assert body["task"] == "transcribe" and body["language"] == "german"
    assert "segments" not in body  # word alone, as OpenAI answers it
    assert body["words"] == [
        {"word": "Guten", "start": 0.0, "end": 0.4},
        {"word": "Tag", "start": 0.4, "end": 0.9},
    ]
    translation = parse_audio_request(
        _upload(tmp_path, model="whisper-1", response_format="verbose_json"), "translate", _resolve
    )
    body = verbose_json(_result(), translation)
    assert body["language"] == "english" and body["task"] == "translate"
    assert set(body["segments"][0]) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }


def test_model_names_and_aliases():
    models = {
        "tiny.en": ServedModel("tiny.en", None, None),
        "base": ServedModel("base", None, None, aliases=("/models/whisper-base",)),
    }
    state = ServerState(models=models, max_upload_bytes=1, request_timeout_s=1)
    assert state.resolve_model("whisper-1") == "tiny.en"
    assert state.resolve_model("/models/whisper-base") == "base"
    assert [c["id"] for c in state.model_cards()] == ["whisper-1", "tiny.en", "base"]
    with pytest.raises(APIError) as info:
        state.resolve_model("whisper-2")
    assert info.value.status == 404 and info.value.code == "model_not_found"
