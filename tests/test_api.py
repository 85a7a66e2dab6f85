"""The Python API on real speech: files, bytes and arrays; clear errors for impossible requests."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.audio.decode import load_audio
from runtime.errors import AudioError, RuntimeInputError
from tests.conftest import eval_file

JFK = (
    "and so my fellow americans ask not what your country can do for you "
    "ask what you can do for your country"
)


def _words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


def test_jfk_file_bytes_and_array_agree(cpu_runtime):
    path = eval_file("jfk.flac")
    result = cpu_runtime.transcribe(path)
    assert _words(result.text) == JFK
    assert result.language == "en" and result.duration == pytest.approx(11.0, abs=0.05)
    assert result.run.backend == "cpu" and result.run.model == "tiny.en"
    assert 0 <= result.segments[0].start < result.segments[-1].end <= 11.0
    assert cpu_runtime.transcribe(path.read_bytes()).text == result.text
    assert cpu_runtime.transcribe(load_audio(path)).text == result.text


def test_top_level_import():
    from runtime import Runtime, Transcription

    assert Runtime.__name__ == "Runtime" and Transcription.__name__ == "Transcription"


def test_english_only_model_refuses_other_languages(cpu_runtime):
    with pytest.raises(RuntimeInputError, match="English-only"):
        cpu_runtime.transcribe(np.zeros(16000, np.float32), language="de")
    with pytest.raises(RuntimeInputError, match="cannot translate"):
        cpu_runtime.transcribe(np.zeros(16000, np.float32), task="translate")
    with pytest.raises(RuntimeInputError, match="unknown language"):
        cpu_runtime.transcribe(np.zeros(16000, np.float32), language="klingon")


def test_bad_audio_is_an_input_error(cpu_runtime, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav"):
        cpu_runtime.transcribe(empty)


def test_options_as_keywords(cpu_runtime):
    path = eval_file("jfk.flac")
    beam = cpu_runtime.transcribe(path, beam_size=5, temperature=0.0)
    assert _words(beam.text) == JFK
    assert all(s.temperature == 0.0 for s in beam.segments)
    with pytest.raises(RuntimeInputError):
        cpu_runtime.transcribe(path, no_such_option=1)
