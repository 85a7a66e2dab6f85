"""int8 cross-attention keys and values (``backends.onnx.cross_int8``, the kernel's ``xattn_i8``
and ``CrossQuantizer``): each key and value row quantized with its own scale, attention exact
over what was packed, the decoder's logits those of float16 keys and values within int8's
rounding, rows still independent of their batch mates.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends.onnx import OnnxBackend  # noqa: E402
from backends.onnx.cross_int8 import Int8CrossKV  # noqa: E402
from backends.onnx.kernel import SCALE_BYTES, load_kernel  # noqa: E402
from runtime.backend import LoadOptions  # noqa: E402
from tests.conftest import bf16, built_kernel, cpu_has, rel_err  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cross-int8-cache")


@pytest.fixture(scope="module")
def kernel(cache_dir):
    return built_kernel(load_kernel, cache_dir / "kernels")


def unpack_keys(packed: np.ndarray, s: int) -> np.ndarray:
    """int8 key panels (..., P, dh + 4, 16) -> float64 keys (..., dh, S)."""
    *lead, panels, rows, lanes = packed.shape
    dh = rows - SCALE_BYTES
    scales = np.ascontiguousarray(packed[..., dh:, :]).view(np.float32)
    scales = scales.reshape(*lead, panels, 1, 16)
    keys = packed[..., :dh, :].astype(np.float64) * scales  # (..., P, dh, 16)
    keys = np.moveaxis(keys, -3, -2).reshape(*lead, dh, panels * lanes)
    return keys[..., :s]


def unpack_values(packed: np.ndarray) -> np.ndarray:
    """int8 value rows (..., S, dh + 4) -> float64 values (..., S, dh)."""
    dh = packed.shape[-1] - SCALE_BYTES
    scales = np.ascontiguousarray(packed[..., dh:]).view(np.float32)
    return packed[..., :dh].astype(np.float64) * scales


@pytest.mark.parametrize(
    "shape", [(2, 3, 5, 80, 37), (1, 6, 1, 64, 1500), (3, 2, 9, 64, 16), (1, 2, 48, 64, 1500)]
)
def test_int8_kernel_is_softmax_attention_over_what_was_packed(kernel, shape):
    """Context and scores against float64 over the dequantized keys and values: keys not a
    multiple of 16, heads wider than 64, prompts of several rows. A prompt's 8 or more rows
    (heads a multiple of 32 wide) run in bfloat16 where the CPU has it: its queries as sums of
    two bfloat16 (scores to float32's precision), its softmax weights (times each value row's
    scale) rounded to bfloat16."""
    b, h, t, dh, s = shape
    rng = np.random.default_rng(0)
    q = (rng.standard_normal((b, h, t, dh)) / 8).astype(np.float32)
    keys = rng.standard_normal((b, h, dh, s)).astype(np.float32) * 3
    values = rng.standard_normal((b, h, s, dh)).astype(np.float32)
    k8, v8 = kernel.quantizer("cross_k", keys), kernel.quantizer("cross_v", values)
    assert k8.dtype == np.int8 and k8.shape == (b, h, -(-s // 16), dh + SCALE_BYTES, 16)
    assert v8.shape == (b, h, s, dh + SCALE_BYTES)
    context, scores = kernel(q, k8, v8)
    wide = t >= 8 and dh % 32 == 0 and cpu_has("avx512_bf16")
    want_scores = q.astype(np.float64) @ unpack_keys(k8, s)
    weights = np.exp(want_scores - want_scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    if wide:  # a weight's rounding may flip with float32's softmax: a rare 1/256 of it
        v_scales = np.ascontiguousarray(v8[..., dh:]).view(np.float32)[..., 0]
        w = bf16((weights * v_scales[..., None, :]).astype(np.float32))
        np.testing.assert_allclose(context, w @ v8[..., :dh].astype(np.float64), atol=2e-3)
    else:
        np.testing.assert_allclose(context, weights @ unpack_values(v8), atol=1e-5)


def test_each_key_and_value_row_gets_its_own_scale(kernel):
    """Symmetric per key (over its dh numbers) and per value row: within half a step of the
    input, the largest magnitude at +-127, a row of zeros stays zeros; keys past S are zeros."""
    rng = np.random.default_rng(4)
    values = rng.standard_normal((1, 2, 40, 64)) * rng.uniform(0.01, 100, (1, 2, 40, 1))
    values = values.astype(np.float32)
    values[0, 1, 7] = 0
    v8 = kernel.quantizer("cross_v", values)
    scales = np.ascontiguousarray(v8[..., 64:]).view(np.float32)[..., 0]
    peak = np.abs(values).max(-1)
    np.testing.assert_allclose(scales, peak / 127, rtol=1e-6)
    assert np.all(np.abs(v8[..., :64]).max(-1)[peak > 0] == 127)
    step = scales[..., None].astype(np.float64)
    assert np.all(np.abs(unpack_values(v8) - values) <= step / 2 * (1 + 1e-5))
    assert not v8[0, 1, 7].any()
    keys = rng.standard_normal((1, 2, 64, 21)) * rng.uniform(0.01, 100, (1, 2, 1, 21))
    keys = keys.astype(np.float32)
    k8 = kernel.quantizer("cross_k", keys)
    assert k8.shape == (1, 2, 2, 64 + SCALE_BYTES, 16)
    assert not k8[:, :, 1, :64, 5:].any()  # the keys past 21 in the last panel
    key_step = np.abs(keys).max(2, keepdims=True).astype(np.float64) / 127
    assert np.all(np.abs(unpack_keys(k8, 21) - keys) <= key_step / 2 * (1 + 1e-5))
    with pytest.raises(ValueError, match="cannot pack"):
        kernel.quantizer("cross_v", values.astype(np.float16))


def load(model, cache_dir, int8: bool, precision: str = "fp32"):
    options = {"cache_dir": str(cache_dir), "cross_attention_kernel": True, "cross_kv_int8": int8}
    return OnnxBackend().load(model, LoadOptions(precision=precision, options=options))


@pytest.fixture(scope="module")
def sessions(tiny_model, cache_dir, kernel):
    """fp32 sessions of tiny.en with float16 and with int8 cross keys and values."""
    return load(tiny_model, cache_dir, False), load(tiny_model, cache_dir, True)


def test_the_decoder_with_int8_keys_and_values_gives_the_float16_logits(sessions, tiny_tokenizer):
    """A prompt, rows kept and repeated, steps, rows joining through ``incoming``: int8 arrays
    of half the bytes in the state, and the logits of float16 keys and values within int8's
    rounding, the same greedy tokens."""
    half, int8 = sessions
    assert isinstance(int8.cross_graph, Int8CrossKV)
    assert int8.cross_graph.manifest.outputs_of("cross_k")[0].dtype == "int8"
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 1500, 384)).astype(np.float32)
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" ask not")] * 2)
    states = [s.decoder(features) for s in (int8, half)]
    cross = states[0]._arrays["cross_k"][0], states[1]._arrays["cross_k"][0]
    assert cross[0].dtype == np.int8 and cross[0].nbytes < 0.55 * cross[1].nbytes
    got, want = (s.logits(prompt, (0, -1)) for s in states)
    assert rel_err(got, want) < 2e-2
    assert np.array_equal(got.argmax(-1), want.argmax(-1))
    for state in states:
        state.keep(np.array([1, 1, 0]))
        joining = state.incoming(features[:1] * 0.5)
        joining.logits(prompt[:1])
        state.join(joining)
    got, want = (s.logits(np.array([[300], [301], [302], [303]])) for s in states)
    assert got.shape == (4, 1, 51864) and rel_err(got, want) < 2e-2
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_rows_with_int8_keys_and_values_do_not_change_each_other(
    tiny_model, cache_dir, kernel, tiny_tokenizer
):
    """int8 weights, as the cpu profile runs it: a row's logits are bit-identical alone or
    beside a louder row (each row's keys are quantized with scales of its own)."""
    session = load(tiny_model, cache_dir, True, precision="int8")
    features = np.random.default_rng(3).normal(size=(3, 1500, 384)).astype(np.float32)
    features[1] *= 8.0
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" so it")] * 3)
    together = session.decoder(features).logits(prompt)
    for i in (0, 2):
        alone = session.decoder(features[i : i + 1]).logits(prompt[i : i + 1])
        np.testing.assert_array_equal(together[i], alone[0])
