"""The MLX backend: weight layout (channels-last convs), device frontend, KV cache, precisions.

Runs on Linux with ``mlx[cpu]``; skips with the reason when mlx or mlx-whisper cannot be imported.
Model-level agreement with the CPU backend on real speech is in ``test_conformance.py``; these
tests use one real window's CPU features or random inputs so they stay cheap on MLX's CPU device.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from backends.mlx import MlxBackend, MlxOptions
from backends.mlx import plugin as mlx_plugin
from runtime.audio.mel import N_FRAMES, N_SAMPLES, log_mel_spectrogram
from runtime.backend import LoadOptions
from runtime.plugins import Plugins

_AVAILABLE = MlxBackend().available()
needs_mlx = pytest.mark.skipif(
    not _AVAILABLE, reason=f"mlx backend unavailable: {_AVAILABLE.reason}"
)


def test_plugin_registers_the_backend_in_process():
    from runtime.plugins import Plugins

    found = Plugins(load_entry_points=False, extra=[mlx_plugin]).backends()
    assert isinstance(found["mlx"], MlxBackend)
    assert {"fp32", "fp16", "bf16", "int8", "int4"} <= set(MlxBackend.capabilities.precisions)


def test_unavailable_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx_whisper", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "mlx_whisper.whisper", None)
    availability = MlxBackend().available()
    assert not availability
    assert "mlx-whisper" in availability.reason and "pip install" in availability.reason


def test_options_are_validated():
    with pytest.raises(ValueError):
        MlxOptions(group_size=48)
    with pytest.raises(ValueError):
        MlxOptions(unknown=1)


@pytest.fixture(scope="module")
def mlx_fp32(tiny_model):
    if not _AVAILABLE:
        pytest.skip(f"mlx backend unavailable: {_AVAILABLE.reason}")
    return MlxBackend().load(tiny_model, LoadOptions(precision="fp32"))


@pytest.fixture(scope="module")
def real_features(cpu_session):
    """CPU-encoded features of the JFK window (skips when ../shared/eval is absent)."""
    from runtime.audio.decode import load_audio
    from tests.conftest import eval_file

    audio = load_audio(eval_file("jfk.flac"))
    mel = log_mel_spectrogram(np.pad(audio, (0, N_SAMPLES - len(audio))))
    return cpu_session.encode(mel[None])


@needs_mlx
def test_load_rejects_bad_precision_and_missing_gpu(tiny_model):
    import mlx.core as mx

    from runtime.api import Runtime
    from runtime.errors import UnsupportedRequestError

    with pytest.raises(UnsupportedRequestError, match="backend 'mlx' runs .* not 'int3'"):
        Runtime(
            tiny_model,
            backend="mlx",
            precision="int3",
            plugins=Plugins(load_entry_points=False, extra=[mlx_plugin]),
        ).load()
    if not mx.is_available(mx.gpu):
        with pytest.raises(ValueError, match="Metal"):
            MlxBackend().load(tiny_model, LoadOptions(device="gpu"))


@needs_mlx
def test_conv_weights_are_channels_last(mlx_fp32, cpu_session, tiny_model):
    """conv1 on a (B, frames, mels) input equals the numpy conv on (B, mels, frames)."""
    import mlx.core as mx

    w = tiny_model.weights["encoder.conv1.weight"]
    assert mlx_fp32.net.encoder.conv1.weight.shape == (w.shape[0], w.shape[2], w.shape[1])
    mel = np.random.default_rng(0).uniform(-1, 1, size=(2, 80, 300)).astype(np.float32)
    got = mlx_fp32.net.encoder.conv1(mx.array(mel.transpose(0, 2, 1)))
    net = cpu_session.net
    want = net._conv(mel, net.conv1_w, net.conv1_b, 1)
    np.testing.assert_allclose(np.array(got), want, atol=1e-4)


@needs_mlx
def test_encode_rejects_channels_last_input(mlx_fp32):
    with pytest.raises(ValueError, match="channels-last"):
        mlx_fp32.encode(np.zeros((1, N_FRAMES, 80), dtype=np.float32))


@needs_mlx
@pytest.mark.parametrize(
    "n_samples,padding", [(1, 0), (150, 0), (401, 0), (16000, 0), (23456, N_SAMPLES), (0, 1600)]
)
def test_log_mel_on_device_matches_numpy(mlx_fp32, n_samples, padding):
    audio = np.random.default_rng(n_samples).normal(scale=0.1, size=n_samples).astype(np.float32)
    want = log_mel_spectrogram(audio, n_mels=80, padding=padding)
    got = np.array(mlx_fp32.log_mel(audio, padding=padding))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


@needs_mlx
def test_mel_windows_and_take_stay_on_device(mlx_fp32, cpu_session):
    import mlx.core as mx

    audio = np.random.default_rng(5).normal(scale=0.1, size=16000 * 40).astype(np.float32)
    mel_np = cpu_session.log_mel(audio)
    mel_mx = mlx_fp32.log_mel(audio)
    spans = [(0, 3000), (2500, 1500), (3500, 500)]
    want = cpu_session.mel_windows([(mel_np, s, n) for s, n in spans])
    got = mlx_fp32.mel_windows([(mel_mx, s, n) for s, n in spans])
    assert isinstance(got, mx.array) and got.shape == (3, 80, N_FRAMES)
    np.testing.assert_allclose(np.array(got), want, atol=1e-4)
    rows = mlx_fp32.take(got, np.array([2, 0]))
    assert isinstance(rows, mx.array)
    np.testing.assert_array_equal(np.array(rows), np.array(got)[[2, 0]])


@needs_mlx
def test_kv_cache_steps_equal_one_pass(mlx_fp32, real_features, tiny_tokenizer):
    """Several new tokens after a cached prefix need a causal mask over the whole cache."""
    tokens = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" ask not what your")])
    full = mlx_fp32.decoder(real_features).logits(tokens, positions=tuple(range(tokens.shape[1])))
    state = mlx_fp32.decoder(real_features)
    first = state.logits(tokens[:, :2], positions=(0, 1))
    rest = state.logits(tokens[:, 2:], positions=tuple(range(tokens.shape[1] - 2)))
    assert rest.dtype == np.float32
    np.testing.assert_allclose(np.concatenate([first, rest], 1), full, atol=2e-3, rtol=1e-4)


@needs_mlx
def test_kv_cache_grows_past_its_step(mlx_fp32, real_features, tiny_tokenizer):
    """Caches grow in CACHE_STEP blocks; single steps across a boundary match one long pass."""
    from backends.mlx.decoder import CACHE_STEP

    text = tiny_tokenizer.encode(" ask not what your country can do for you" * 8)
    tokens = np.array([[tiny_tokenizer.special.sot] + text[: CACHE_STEP + 5]])
    n = tokens.shape[1]
    full = mlx_fp32.decoder(real_features).logits(tokens, positions=(-3, -2, -1))
    state = mlx_fp32.decoder(real_features)
    state.logits(tokens[:, : n - 8])
    steps = [state.logits(tokens[:, i : i + 1])[:, 0] for i in range(n - 8, n)]
    np.testing.assert_allclose(np.stack(steps[-3:], 1), full, atol=2e-3, rtol=1e-4)


@needs_mlx
def test_logits_match_cpu_and_keep_reorders_rows(
    mlx_fp32, cpu_session, real_features, tiny_tokenizer
):
    features = np.concatenate([real_features, real_features[:, ::-1]])  # two different windows
    prompt = np.array([[tiny_tokenizer.special.sot]] * 2)
    states = [s.decoder(features) for s in (mlx_fp32, cpu_session)]
    firsts = [st.logits(prompt)[:, 0] for st in states]
    np.testing.assert_allclose(firsts[0], firsts[1], atol=2e-3)
    for st in states:
        st.keep(np.array([1, 1, 0]))
    nxt = [st.logits(np.array([[300], [301], [300]]))[:, 0] for st in states]
    np.testing.assert_allclose(nxt[0], nxt[1], atol=2e-3)
    assert not np.allclose(nxt[0][0], nxt[0][1], atol=1e-3)  # rows really differ


# Teacher-forced logits (magnitude 10-25) against fp32 on JFK, tiny.en, measured with mlx 0.32:
# max |diff| / mean |diff| were fp16 0.028 / 0.0074, bf16 0.26 / 0.066, int8 0.36 / 0.065,
# int4 4.8 / 1.03, every best token the same. Bounds are about twice those.
PRECISION_BOUNDS = {
    "fp16": (0.1, 0.02, 1.0),
    "bf16": (1.0, 0.15, 1.0),
    "int8": (1.0, 0.15, 1.0),
    "int4": (10.0, 2.0, 0.75),
}


@needs_mlx
@pytest.mark.parametrize("precision", list(PRECISION_BOUNDS))
def test_reduced_precisions_track_fp32(
    tiny_model, mlx_fp32, real_features, tiny_tokenizer, precision
):
    """Teacher-forced logits on a real window stay near fp32 and pick the same best tokens."""
    import mlx.nn as nn

    session = MlxBackend().load(tiny_model, LoadOptions(precision=precision))
    if precision.startswith("int"):
        assert isinstance(session.net.decoder.blocks[0].mlp1, nn.QuantizedLinear)
        assert f"{precision[3:]}-bit" in session.describe()
    tokens = np.array(
        [
            [tiny_tokenizer.special.sot, tiny_tokenizer.special.no_timestamps]
            + tiny_tokenizer.encode(" And so my fellow Americans, ask not")
        ]
    )
    positions = tuple(range(1, tokens.shape[1]))
    ref = mlx_fp32.decoder(real_features).logits(tokens, positions)
    got = session.decoder(real_features).logits(tokens, positions)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    max_diff, mean_diff, agreement = PRECISION_BOUNDS[precision]
    diff = np.abs(got - ref)
    assert diff.max() <= max_diff and diff.mean() <= mean_diff
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= agreement


@needs_mlx
def test_written_folder_loads_in_mlx_whisper(
    tmp_path, tiny_model, mlx_fp32, real_features, tiny_tokenizer
):
    """write_mlx_folder is mlx-whisper's own layout: its loader and decoder give our logits."""
    import mlx.core as mx
    from mlx_whisper.load_models import load_model

    from backends.mlx.model import write_mlx_folder

    theirs = load_model(str(write_mlx_folder(tiny_model, tmp_path / "tiny")), dtype=mx.float32)
    tokens = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" ask not")])
    want = np.array(theirs.logits(mx.array(tokens), mx.array(real_features)))
    got = mlx_fp32.decoder(real_features).logits(tokens, tuple(range(tokens.shape[1])))
    np.testing.assert_allclose(got, want, atol=2e-3)
