"""Decoder steps through I/O binding (``backends.onnx.binding``): on the CPU the bound path must
give bit-identical logits and tokens to ``InferenceSession.run``, with rows joining and leaving."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from backends.onnx import OnnxBackend  # noqa: E402
from backends.onnx.binding import Device, binding_device  # noqa: E402
from runtime.backend import LoadOptions  # noqa: E402
from tests.conftest import eval_file  # noqa: E402
from tests.test_continuous import (  # noqa: E402
    test_rows_joining_at_other_lengths_get_the_logits_they_get_alone as _rows_alone_check,
)
from tests.test_onnx_backend import first_window_mel  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx-cache"))


def _load(model, cache_dir, precision="fp32", **options):
    options = {"cache_dir": cache_dir, **options}
    return OnnxBackend().load(model, LoadOptions(precision=precision, options=options))


@pytest.fixture(scope="module")
def plain(tiny_model, cache_dir):
    return _load(tiny_model, cache_dir)


@pytest.fixture(scope="module")
def bound(tiny_model, cache_dir):
    return _load(tiny_model, cache_dir, io_binding=True)


@pytest.fixture(scope="module")
def features(plain):
    rng = np.random.default_rng(3)
    return plain.encode(rng.uniform(-1, 1, size=(3, 80, 3000)).astype(np.float32))


def test_the_cpu_binds_only_when_asked(plain, bound):
    assert plain.decoder_device is None
    assert bound.decoder_device == Device("cpu", 0)


class _FakeSession:
    def __init__(self, providers, options):
        self.providers, self.options = providers, options

    def get_providers(self):
        return self.providers

    def get_provider_options(self):
        return self.options


def test_a_cuda_session_binds_to_its_device():
    cuda = _FakeSession(
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        {"CUDAExecutionProvider": {"device_id": "1"}, "CPUExecutionProvider": {}},
    )
    assert binding_device(cuda, None) == Device("cuda", 1)
    assert binding_device(cuda, False) is None
    cpu = _FakeSession(["CPUExecutionProvider"], {"CPUExecutionProvider": {}})
    assert binding_device(cpu, None) is None
    assert binding_device(cpu, True) == Device("cpu", 0)


def test_bound_logits_are_bit_identical_while_rows_join_and_leave(
    plain, bound, features, tiny_tokenizer
):
    """Prompt, steps, a row leaving, rows repeated (beam search's gather), a row joining at
    another length, every row leaving: the bound state's logits are ``run``'s, bit for bit
    (the resident cross K/V are rebound whenever the rows change)."""
    sot = tiny_tokenizer.special.sot
    prompt = np.array([[sot, *tiny_tokenizer.encode(" and so my")]] * 2)
    states = [s.decoder(features[:2]) for s in (plain, bound)]
    assert states[0]._bound is None and states[1]._bound is not None
    joiners = [s.decoder(features[2:]) for s in (plain, bound)]

    def same(tokens, positions=(-1,)):
        got = [s.logits(np.array(tokens), positions) for s in states]
        np.testing.assert_array_equal(got[1], got[0])

    same(prompt, (0, -1))
    same([[300], [301]])
    for state in states:
        state.keep(np.array([1]))
    same([[302]])
    for state in states:
        state.keep(np.array([0, 0, 0]))
    same([[303], [304], [305]])
    alone = [j.logits(np.array([[sot]])) for j in joiners]  # one token cached: another length
    np.testing.assert_array_equal(alone[1], alone[0])
    for state, joiner in zip(states, joiners):
        state.join(joiner)
    same([[306], [307], [308], [309]])
    for state in states:
        state.keep(np.array([3, 1]))
    same([[310], [311]])


def test_bound_rows_get_the_logits_they_get_alone(tiny_model, cache_dir, tiny_tokenizer):
    """The continuous runner's row-independence check (int8, rows joining at other lengths and
    leaving) on a bound session."""
    session = _load(tiny_model, cache_dir, "int8", io_binding=True)
    rng = np.random.default_rng(5)
    f = rng.normal(size=(4, 1500, 384)).astype(np.float32)
    f[1] *= 6.0
    _rows_alone_check(session, f, tiny_tokenizer)


@pytest.mark.parametrize("parts", [("jfk.flac",), ("librispeech", "1089-134686-0000.flac")])
def test_bound_greedy_tokens_are_run_tokens(plain, bound, tiny_tokenizer, parts):
    from runtime.decoding import DecodingOptions, decode

    mel = first_window_mel(eval_file(*parts))
    options = DecodingOptions(language="en", temperature=0.0)
    features = plain.encode(mel)
    want = decode(plain, features, tiny_tokenizer, options)[0]
    got = decode(bound, features, tiny_tokenizer, options)[0]
    assert got.tokens == want.tokens and got.text == want.text


def test_bound_cross_attention_scores_are_run_scores(plain, bound, features, tiny_tokenizer):
    """Word timestamps' ``cross_qk`` output comes back bound too, bit for bit."""
    prompt = np.array([[tiny_tokenizer.special.sot, *tiny_tokenizer.encode(" ask not")]] * 2)
    states = [s.decoder(features[:2]) for s in (plain, bound)]
    heads = states[0]._heads[:2]
    got = [s.logits_and_attention(prompt, (-1,), heads) for s in states]
    np.testing.assert_array_equal(got[1][0], got[0][0])
    np.testing.assert_array_equal(got[1][1], got[0][1])
