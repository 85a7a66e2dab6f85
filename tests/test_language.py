"""Language: detection per input and per chunk with a threshold, forcing, translation, and what an
English-only model refuses. Speech in other languages is synthesized with espeak-ng."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from runtime.decoding.language import chunk_languages, file_language
from runtime.errors import UnsupportedRequestError
from runtime.pipeline.sequential import TranscribeOptions
from tests.conftest import eval_file

SAMPLES = {  # espeak-ng voice -> text
    "de": "Guten Tag. Heute ist das Wetter in Berlin sehr schön, und wir gehen am Nachmittag "
    "in den Park. Danach trinken wir einen Kaffee und sprechen über die Arbeit.",
    "es": "Buenos días. Hoy hace muy buen tiempo en Madrid y por la tarde vamos al parque con "
    "nuestros amigos.",
}


# -- choosing languages from detections ----------------------------------------------------------
def test_file_language_counts_confident_windows_only():
    windows = [{"en": 0.9, "de": 0.1}, {"en": 0.2, "de": 0.3, "fr": 0.5}, {"en": 0.8, "de": 0.2}]
    guess = file_language(windows, threshold=0.6)
    assert guess.language == "en" and guess.probability == pytest.approx(0.85)
    unsure = [{"en": 0.4, "de": 0.35, "fr": 0.25}, {"en": 0.3, "de": 0.45, "fr": 0.25}]
    assert file_language(unsure, threshold=0.6).language == "de"  # none confident: all count
    with pytest.raises(ValueError):
        file_language([], 0.5)


def test_chunk_languages_keep_the_input_language_where_unsure():
    windows = [{"en": 0.9, "de": 0.1}, {"en": 0.45, "de": 0.55}, {"en": 0.2, "de": 0.8}]
    assert chunk_languages(windows, 0.7, fallback="en") == ["en", "en", "de"]
    assert chunk_languages(windows, 0.5, fallback="en") == ["en", "de", "de"]


def test_language_options_are_checked():
    with pytest.raises(ValueError, match="language_detection"):
        TranscribeOptions(language_detection="segment")
    with pytest.raises(ValueError, match="language_threshold"):
        TranscribeOptions(language_threshold=1.5)


# -- English-only models ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(language="de"), "English-only and cannot transcribe language 'de'"),
        (dict(task="translate"), "English-only and cannot translate"),
    ],
)
def test_english_only_model_refuses_other_languages_and_translation(cpu_runtime, kwargs, message):
    with pytest.raises(UnsupportedRequestError, match=message):
        cpu_runtime.transcribe(np.zeros(16000, np.float32), **kwargs)


def test_english_only_model_reports_english(cpu_runtime):
    result = cpu_runtime.transcribe(eval_file("jfk.flac"), language_detection="chunk")
    assert result.language == "en"


# -- the multilingual base model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_runtime(base_model):
    """The base model on ONNX Runtime int8, what the cpu profile runs (5x the numpy backend)."""
    from runtime.api import Runtime

    return Runtime(base_model, backend="onnx", precision="int8")


def test_base_transcribes_english_as_english(base_runtime):
    result = base_runtime.transcribe(eval_file("jfk.flac"), temperature=0.0)
    assert result.language == "en" and result.language_probability > 0.5
    assert "ask not what your country" in result.text.lower()


@pytest.mark.parametrize(
    "parts",
    [
        ("librispeech", "1688-142285-0000.flac"),
        ("librispeech-train-clean", "1088-134315-0001.flac"),
    ],
)
def test_base_detects_english(base_runtime, parts):
    """Detection alone (``tools/detect_languages.py`` runs every English file of the eval set)."""
    guess = base_runtime.detect_language(eval_file(*parts))
    assert guess.language == "en" and guess.probability > 0.5


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """16 kHz speech per language, made with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng is not installed (apt-get install espeak-ng): it synthesizes "
            "the non-English speech of these tests"
        )
    from runtime.audio.decode import load_audio

    folder = tmp_path_factory.mktemp("espeak")
    out = {}
    for voice, text in SAMPLES.items():
        path = folder / f"{voice}.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        out[voice] = load_audio(path)
    return out


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_base_detects_synthetic_speech(base_runtime, synthetic, language):
    assert base_runtime.detect_language(synthetic[language]).language == language


def test_spanish_is_transcribed_translated_or_forced(base_runtime, synthetic):
    result = base_runtime.transcribe(synthetic["es"], temperature=0.0)
    assert result.language == "es" and "madrid" in result.text.lower(), result.text
    translated = base_runtime.transcribe(synthetic["es"], task="translate", temperature=0.0)
    assert translated.language == "es"
    assert "good" in translated.text.lower() and "días" not in translated.text.lower()
    forced = base_runtime.transcribe(synthetic["es"], language="en", temperature=0.0)
    assert forced.language == "en" and forced.language_probability is None  # not detected


def test_per_chunk_detection_follows_the_speech(base_runtime, synthetic):
    """German, 20 s of silence, then English: the VAD cuts two chunks, and per-chunk detection
    decodes each in its own language (per-input detection would decode both as German)."""
    from runtime.audio.decode import load_audio

    audio = np.concatenate(
        [synthetic["de"], np.zeros(20 * 16000, np.float32), load_audio(eval_file("jfk.flac"))]
    )
    result = base_runtime.transcribe(audio, language_detection="chunk", temperature=0.0)
    assert result.language == "de"
    german = [s.language for s in result.segments if s.end < 15]
    english = [s.language for s in result.segments if s.start > 25]
    assert german and set(german) == {"de"} and english and set(english) == {"en"}
    assert "ask not what your country" in result.text.lower()
