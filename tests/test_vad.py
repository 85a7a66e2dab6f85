"""VAD: Silero over whole signals, the energy fallback, and turning probabilities into regions."""

from __future__ import annotations

import numpy as np

from runtime.audio.decode import load_audio
from runtime.audio.vad import (
    FRAME,
    VadOptions,
    energy_probs,
    silero_probs,
    speech_probs,
    speech_regions,
)
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
    audio[SR : 2 * SR] = 0.3 * np.sin(2 * np.pi * 440 * t)
    audio[4 * SR : 5 * SR] = 0.3 * np.sin(2 * np.pi * 440 * t)
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


def test_sequence_graph_matches_silero_stepped_frame_by_frame(monkeypatch):
    """The rebuilt graph gives the shipped graph's own streaming probabilities (state carried
    frame to frame), also when the frames are split over several calls."""
    import runtime.audio.silero as silero
    import runtime.audio.vad as vad

    speech = load_audio(eval_file("jfk.flac"))
    audio = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(SR, np.float32)])
    import onnxruntime as ort

    model = vad._silero()
    assert model.sequence
    stepped = silero.stepwise_probs(
        ort.InferenceSession(str(vad.silero_model_path()), providers=["CPUExecutionProvider"]),
        silero.frames_of(audio),
    )
    whole = model.probs(audio)
    assert whole.shape == (-(-len(audio) // FRAME),) == stepped.shape
    assert stepped.max() > 0.9 and stepped[:20].max() < 0.1  # speech found, leading silence not
    np.testing.assert_allclose(whole, stepped, atol=1e-5)
    monkeypatch.setattr(silero, "FRAMES_PER_CALL", 100)
    np.testing.assert_allclose(model.probs(audio), stepped, atol=1e-5)


def test_a_file_of_another_layout_is_stepped_frame_by_frame(monkeypatch, caplog, tmp_path):
    import runtime.audio.silero as silero
    import runtime.audio.vad as vad

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no sequence graph cached

    def unreadable(path):
        raise ValueError("not the Silero v5 layout")

    monkeypatch.setattr(silero, "read_weights", unreadable)
    with caplog.at_level("WARNING"):
        fallback = silero.SileroVad(vad.silero_model_path())
    assert not fallback.sequence and "frame by frame" in caplog.text
    speech = load_audio(eval_file("jfk.flac"))[: 3 * SR]
    np.testing.assert_allclose(fallback.probs(speech), vad._silero().probs(speech), atol=1e-5)


def test_a_short_clip_is_one_model_call(monkeypatch):
    """Frames go through the model thousands at a time: a 7 s clip is one call, not 219."""
    import runtime.audio.vad as vad

    speech = load_audio(eval_file("jfk.flac"))[: 7 * 16000]
    model, calls = vad._silero(), []
    session = model.session

    class Counting:
        def run(self, *args, **kwargs):
            calls.append(1)
            return session.run(*args, **kwargs)

    monkeypatch.setattr(model, "session", Counting())
    probs = silero_probs(speech)
    assert len(calls) == 1 and len(probs) == -(-len(speech) // FRAME)


def test_the_sequence_graph_is_built_once_and_cached(monkeypatch, tmp_path):
    """Building the sequence graph needs onnx (0.6 s to import): the first start builds and
    caches it, later ones read it back (onnx never imported) with the same probabilities."""
    import runtime.audio.silero as silero
    import runtime.audio.vad as vad

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = []
    read = silero.read_weights
    monkeypatch.setattr(silero, "read_weights", lambda path: built.append(path) or read(path))
    first = silero.SileroVad(vad.silero_model_path())
    again = silero.SileroVad(vad.silero_model_path())
    assert len(built) == 1 and first.sequence and again.sequence
    assert len(list((tmp_path / "whisper-runtime" / "silero").glob("sequence-*.onnx"))) == 1
    assert not list((tmp_path / "whisper-runtime" / "silero").glob("*.part"))
    speech = load_audio(eval_file("jfk.flac"))[: 3 * SR]
    np.testing.assert_array_equal(again.probs(speech), first.probs(speech))
