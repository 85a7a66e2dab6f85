"""Parity with openai-whisper on the same tiny.en weights (fixtures: tools/make_reference.py).

The reference decoded LibriSpeech utterances greedily with and without timestamps; the encoder
reference was computed in float64. Our numpy path must produce the same token ids, and its
float32 encoder must stay within 1e-4 relative error of the float64 reference.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from runtime.audio.decode import load_audio
from runtime.audio.mel import log_mel_spectrogram, pad_or_trim
from runtime.decoding import DecodingOptions, decode
from tests.conftest import FIXTURES, eval_file

REFERENCE = json.loads((FIXTURES / "reference_tiny_en.json").read_text())
ENCODER = np.load(FIXTURES / "reference_tiny_en_encoder.npz")
UTTERANCES = REFERENCE["utterances"]


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(ours.astype(np.float64) - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def windows():
    """Decoded audio and its 30 s mel window per utterance, checked against the reference's."""
    out = {}
    for utt in UTTERANCES:
        folder = () if utt["audio_file"] == "jfk.flac" else ("librispeech",)
        audio = load_audio(eval_file(*folder, utt["audio_file"]))
        assert len(audio) == utt["audio_num_samples"]
        digest = hashlib.sha256(np.ascontiguousarray(audio, np.float32).tobytes()).hexdigest()
        assert digest == utt["audio_sha256_float32"], "audio decoded to different samples"
        out[utt["utt_id"]] = log_mel_spectrogram(pad_or_trim(audio))[None]  # as whisper.decode
    return out


def test_enough_utterances_in_fixture():
    assert len(UTTERANCES) >= 5
    assert REFERENCE["header"]


@pytest.mark.parametrize("utt", UTTERANCES, ids=lambda u: u["utt_id"])
def test_greedy_tokens_equal_openai_whisper(utt, windows, cpu_session, tiny_tokenizer):
    features = cpu_session.encode(windows[utt["utt_id"]])
    with_ts = decode(cpu_session, features, tiny_tokenizer, DecodingOptions(temperature=0.0))[0]
    assert with_ts.tokens == utt["timestamps"]["tokens"]
    assert with_ts.avg_logprob == pytest.approx(utt["timestamps"]["avg_logprob"], abs=1e-3)
    assert with_ts.no_speech_prob == pytest.approx(utt["timestamps"]["no_speech_prob"], abs=1e-3)
    plain = decode(
        cpu_session,
        features,
        tiny_tokenizer,
        DecodingOptions(temperature=0.0, without_timestamps=True),
    )[0]
    assert plain.tokens == utt["without_timestamps"]["tokens"]


@pytest.mark.parametrize("utt_id", sorted({k.split("/")[0] for k in ENCODER.files}))
def test_encoder_matches_float64_reference(utt_id, windows, cpu_session):
    mel = windows[utt_id]
    np.testing.assert_allclose(mel[0, :, :8], ENCODER[f"{utt_id}/mel_first_frames"], atol=2e-5)
    out = cpu_session.encode(mel)[0]
    pairs = {
        "encoder_first_frames": out[:8],
        "encoder_frame_0": out[0],
        "encoder_last_frame": out[-1],
        "encoder_channel_mean": out.astype(np.float64).mean(0),
        "encoder_frame_norm": np.linalg.norm(out.astype(np.float64), axis=1),
    }
    for name, ours in pairs.items():
        err = _relative_error(ours, ENCODER[f"{utt_id}/{name}"])
        assert err < 1e-4, f"{name}: relative error {err:.2e}"
