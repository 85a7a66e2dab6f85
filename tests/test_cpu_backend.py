"""The numpy Whisper: convolution, batching and KV-cache consistency."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cpu import CpuBackend
from backends.cpu.model import NumpyWhisper


def test_conv_matches_direct_definition():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 9)).astype(np.float64)
    w = rng.normal(size=(4, 5, 3))
    b = rng.normal(size=4)
    for stride in (1, 2):
        got = NumpyWhisper._conv(x, w.reshape(4, -1).T, b, stride)
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
        t_out = (9 - 1) // stride + 1
        want = np.stack(
            [
                np.einsum("bik,oik->bo", padded[:, :, t * stride : t * stride + 3], w) + b
                for t in range(t_out)
            ],
            axis=1,
        )
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.fixture(scope="module")
def mel_pair():
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, size=(2, 80, 3000)).astype(np.float32)


def test_batched_encoder_equals_rows(cpu_session, mel_pair):
    both = cpu_session.encode(mel_pair)
    assert both.shape == (2, 1500, 384) and both.dtype == np.float32
    for i in range(2):
        np.testing.assert_allclose(both[i], cpu_session.encode(mel_pair[i : i + 1])[0], atol=1e-5)


def test_kv_cache_steps_equal_one_pass(cpu_session, mel_pair, tiny_tokenizer):
    features = cpu_session.encode(mel_pair)
    tokens = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" ask not what")] * 2)
    full = cpu_session.decoder(features).logits(tokens, positions=tuple(range(tokens.shape[1])))
    state = cpu_session.decoder(features)
    steps = [state.logits(tokens[:, i : i + 1])[:, 0] for i in range(tokens.shape[1])]
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=2e-3, rtol=1e-4)


def test_keep_reorders_and_repeats_rows(cpu_session, mel_pair, tiny_tokenizer):
    features = cpu_session.encode(mel_pair)
    prompt = np.array([[tiny_tokenizer.special.sot]] * 2)
    state = cpu_session.decoder(features)
    first = state.logits(prompt)[:, 0]
    state.keep(np.array([1, 1, 0]))
    nxt = state.logits(np.array([[300], [300], [300]]))[:, 0]
    ref = cpu_session.decoder(features)
    ref.logits(prompt)
    want = ref.logits(np.array([[300], [300]]))[:, 0]
    np.testing.assert_allclose(nxt, want[[1, 1, 0]], atol=1e-4)
    assert not np.allclose(first[0], first[1])  # the two windows really differ


def test_backend_contract():
    backend = CpuBackend()
    assert backend.available() and backend.capabilities.batched_decoder
    from runtime.backend import check_precision
    from runtime.errors import UnsupportedRequestError

    with pytest.raises(UnsupportedRequestError, match="backend 'cpu' runs fp32, fp64, not 'int3'"):
        check_precision(backend.capabilities, backend.name, "int3")  # the runtime's check
