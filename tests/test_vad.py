"""VAD: Silero in batched lanes, the energy fallback, and turning probabilities into regions."""

from __future__ import annotations

import numpy as np
from runtime.audio import load_audio
from runtime.vad import (FRAME, VadOptions, energy_probs, silero_probs, speech_probs,
                         speech_regions)
from tests.conftest import eval_file

SR = 16000


def test_regions_hysteresis_min_silence_and_padding():
    probs = np.zeros(200, np.float32)
    probs[10:40] = 0.9
    probs[45:80] = 0.9  # a 5-frame (160 ms) dip: shorter than min_silence, so one region
    probs[150:152] = 0.9  # 64 ms burst: shorter than min_speech, dropped
    opts = VadOptions(speech_pad_s=0.0)
    assert speech_regions(probs, opts) == [(10 * FRAME, 80 * FRAME)]
    padded = speech_regions(probs, VadOptions(speech_pad_s=0.1))
    assert padded == [(10 * FRAME - 1600, 80 * FRAME + 1600)]


def test_energy_detector_finds_tone_bursts():
    audio = np.zeros(SR * 6, np.float32)
    t = np.arange(SR) / SR
    audio[SR: 2 * SR] = 0.3 * np.sin(2 * np.pi * 440 * t)
    audio[4 * SR: 5 * SR] = 0.3 * np.sin(2 * np.pi * 440 * t)
    regions = speech_regions(energy_probs(audio), VadOptions(speech_pad_s=0.0), len(audio))
    assert len(regions) == 2
    assert abs(regions[0][0] - SR) < FRAME and abs(regions[1][1] - 5 * SR) < FRAME


def test_silero_on_speech_and_silence():
    speech = load_audio(eval_file("jfk.flac"))
    audio = np.concatenate([np.zeros(3 * SR, np.float32), speech, np.zeros(3 * SR, np.float32)])
    probs = speech_probs(audio)
    assert probs.method == "silero"
    regions = speech_regions(probs.probs, VadOptions(), len(audio))
    assert regions and regions[0][0] >= 2.5 * SR and regions[-1][1] <= len(audio) - 2.5 * SR
    covered = sum(e - s for s, e in regions)
    assert covered > 0.6 * len(speech)
    assert speech_regions(silero_probs(np.zeros(10 * SR, np.float32)), VadOptions()) == []


def test_lanes_agree_with_one_long_lane():
    speech = load_audio(eval_file("jfk.flac"))
    audio = np.tile(speech, 3)
    one = silero_probs(audio, VadOptions(lane_s=60.0))
    many = silero_probs(audio, VadOptions(lane_s=5.0))
    assert one.shape == many.shape
    assert np.mean(np.abs(one - many) < 0.2) > 0.95
    a, b = speech_regions(one), speech_regions(many)
    assert len(a) == len(b)
    assert np.max(np.abs(np.array(a) - np.array(b))) <= 4 * FRAME


def test_short_audio_is_one_lane_of_its_own_length(monkeypatch):
    """A clip shorter than a lane gives the frames a full-length lane gives (the model is
    causal), from a quarter of the model calls."""
    import runtime.vad as vad

    speech = load_audio(eval_file("jfk.flac"))[: 7 * 16000]
    full = silero_probs(np.concatenate([speech, np.zeros(23 * 16000, np.float32)]))
    session, calls = vad._silero_session(), []

    class Counting:
        def run(self, *args, **kwargs):
            calls.append(1)
            return session.run(*args, **kwargs)

    monkeypatch.setattr(vad, "_silero_session", lambda: Counting())
    short = silero_probs(speech)
    assert len(calls) <= len(short) + 32  # the clip's frames and the 1 s warm-up, not 30 s
    assert len(short) == -(-len(speech) // FRAME)
    np.testing.assert_allclose(short, full[: len(short)], atol=1e-5)
