"""The float16 cross-attention kernel and the decoder cut around it (``backends.onnx.kernel``,
``backends.onnx.split``): the same attention as float64, the same logits as the decoder graph
within float16's rounding, rows independent of each other, and a clear fallback where the
kernel cannot be built.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends.onnx import OnnxBackend  # noqa: E402
from backends.onnx.kernel import load_kernel, to_panels  # noqa: E402
from backends.onnx.sessions import Graph  # noqa: E402
from backends.onnx.split import KernelDecoder  # noqa: E402
from runtime.backend import LoadOptions  # noqa: E402
from tests.conftest import rel_err  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-kernel-cache")


@pytest.fixture(scope="module")
def kernel(cache_dir):
    built = load_kernel(cache_dir / "kernels", 2)
    if isinstance(built, str):
        pytest.skip(built)
    return built


def load(model, cache_dir, kernel: bool, precision: str = "fp32"):
    options = {"cache_dir": str(cache_dir), "cross_attention_kernel": kernel}
    return OnnxBackend().load(model, LoadOptions(precision=precision, options=options))


@pytest.fixture(scope="module")
def sessions(tiny_model, cache_dir, kernel):
    """fp32 sessions of tiny.en with and without the kernel, on one cache."""
    return load(tiny_model, cache_dir, False), load(tiny_model, cache_dir, True)


@pytest.mark.parametrize("shape", [(2, 3, 5, 80, 37), (1, 6, 1, 64, 1500), (3, 2, 9, 64, 16)])
def test_kernel_is_softmax_attention_over_its_float16_inputs(kernel, shape):
    """Context and scores of every row, head and query token, against float64 over the same
    float16 keys and values: keys not a multiple of 16, heads wider than 64, prompts."""
    b, h, t, dh, s = shape
    rng = np.random.default_rng(0)
    q = (rng.standard_normal((b, h, t, dh)) / 8).astype(np.float32)
    keys = rng.standard_normal((b, h, dh, s)).astype(np.float32)
    values = rng.standard_normal((b, h, s, dh)).astype(np.float16)
    context, scores = kernel(q, to_panels(keys), values)
    want_scores = q.astype(np.float64) @ keys.astype(np.float16).astype(np.float64)
    weights = np.exp(want_scores - want_scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    np.testing.assert_allclose(context, weights @ values.astype(np.float64), atol=1e-5)


def test_kernel_decoder_gives_the_graphs_logits(sessions, cpu_session, tiny_tokenizer):
    """The decoder cut around the kernel answers as the decoder graph: a prompt, rows kept and
    repeated, steps; float16 keys and values are the only difference (numpy as the reference)."""
    plain, cut = sessions
    assert isinstance(cut.decoder_graph, KernelDecoder) and isinstance(plain.decoder_graph, Graph)
    assert cut.cross_graph.manifest.outputs_of("cross_k")[0].dtype == "float16"
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2, 1500, 384)).astype(np.float32)
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" ask not")] * 2)
    states = [s.decoder(features) for s in (cut, cpu_session)]
    got, want = (s.logits(prompt, (0, -1)) for s in states)
    assert rel_err(got, want) < 2e-3
    for state in states:
        state.keep(np.array([1, 1, 0]))
    got, want = (s.logits(np.array([[300], [301], [302]])) for s in states)
    assert got.shape == (3, 1, 51864) and rel_err(got, want) < 2e-3
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_kernel_decoder_gives_word_alignment_scores(sessions, tiny_tokenizer):
    """``cross_qk`` (word timestamps) comes from the kernel's scores: the graph's, within
    float16 rounding of the keys."""
    plain, cut = sessions
    features = np.random.default_rng(2).normal(size=(1, 1500, 384)).astype(np.float32)
    tokens = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" and so my")])
    heads = tuple(tuple(h) for h in cut.decoder_graph.manifest.details["alignment_heads"])
    (_, want), (_, got) = (
        s.decoder(features).logits_and_attention(tokens, (-1,), heads) for s in sessions
    )
    assert got.shape == want.shape and rel_err(got, want) < 2e-3


def test_rows_decoded_with_the_kernel_do_not_change_each_other(
    tiny_model, cache_dir, kernel, tiny_tokenizer
):
    """int8, as the cpu profile runs it: a row's logits are bit-identical alone or beside a
    louder row, so a file's text does not depend on its batch mates."""
    session = load(tiny_model, cache_dir, True, precision="int8")
    assert isinstance(session.decoder_graph, KernelDecoder)
    features = np.random.default_rng(3).normal(size=(3, 1500, 384)).astype(np.float32)
    features[1] *= 8.0
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" so it")] * 3)
    together = session.decoder(features).logits(prompt)
    for i in (0, 2):
        alone = session.decoder(features[i : i + 1]).logits(prompt[i : i + 1])
        np.testing.assert_array_equal(together[i], alone[0])


def test_derived_graphs_are_made_once(tiny_model, cache_dir, sessions):
    """The float16 cross_kv and the decoder's parts are made once per exported graph, not at
    every load."""
    made = sorted(cache_dir.rglob("*.part*.onnx")) + sorted(cache_dir.rglob("*.fp16.onnx"))
    assert len(made) >= 6
    stamps = {p: p.stat().st_mtime_ns for p in made}
    load(tiny_model, cache_dir, True)
    assert {p: p.stat().st_mtime_ns for p in made} == stamps


def test_without_a_compiler_the_graph_attends_and_says_why(
    tiny_model, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with caplog.at_level(logging.INFO, logger="backends.onnx"):
        session = load(tiny_model, tmp_path, True)
    assert isinstance(session.decoder_graph, Graph)
    assert session.cross_graph.manifest.outputs_of("cross_k")[0].dtype == "float32"
    assert any("no C compiler (cc)" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.rglob("*.so"))


def test_placement_reports_the_parts_as_one_decoder(sessions):
    """``runtime detect`` and ``--verbose`` see one decoder: the parts' nodes counted
    together, each part's own count (not the whole graph's) from when it was cut."""
    plain, cut = sessions
    parts = cut.decoder_graph.parts
    counts = [p.placement.nodes["CPUExecutionProvider"] for p in parts]
    whole = plain.decoder_graph.placement.nodes["CPUExecutionProvider"]
    assert [p.placement.graph for p in parts] == [f"decoder part {i}" for i in range(len(parts))]
    assert all(0 < n < whole for n in counts)
    assert cut.decoder_graph.placement.graph == "decoder"
    assert cut.decoder_graph.placement.nodes == {"CPUExecutionProvider": sum(counts)}
