"""The bfloat16 self-attention kernel and the encoder cut around it (``backends.onnx.kernel``,
``backends.onnx.split_encoder``): the same attention as float64 over bfloat16 inputs, the same
features as the encoder graph within bfloat16's rounding, windows independent of each other,
and a clear fallback where the kernel cannot be built or the encoder is not fused.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends.onnx import OnnxBackend  # noqa: E402
from backends.onnx.kernel import load_self_attention  # noqa: E402
from backends.onnx.sessions import Graph  # noqa: E402
from backends.onnx.split_encoder import KernelEncoder  # noqa: E402
from runtime.backend import LoadOptions  # noqa: E402
from tests.conftest import bf16, built_kernel, eval_file, rel_err  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-encoder-kernel-cache")


@pytest.fixture(scope="module")
def kernel(cache_dir):
    return built_kernel(load_self_attention, cache_dir / "kernels")


def load(model, cache_dir, kernel: bool, precision: str = "fp32", fused: bool = True):
    options = {
        "cache_dir": str(cache_dir),
        "fused_attention": fused,
        "encoder_attention_kernel": kernel,
    }
    return OnnxBackend().load(model, LoadOptions(precision=precision, options=options))


@pytest.fixture(scope="module")
def sessions(tiny_model, cache_dir, kernel):
    """fp32 sessions of tiny.en with fused attention, without and with the kernel."""
    return load(tiny_model, cache_dir, False), load(tiny_model, cache_dir, True)


@pytest.mark.parametrize("shape", [(1, 1500, 6), (2, 37, 3), (1, 1499, 2), (3, 9, 1)])
def test_kernel_is_softmax_attention_over_its_bfloat16_inputs(kernel, shape):
    """Every window, head and query against float64 over the same bfloat16 q, k and v: key
    counts not a multiple of 16 (or of 2), query counts not a multiple of 8, several windows.
    The softmax weights are rounded to bfloat16 too: about 2^-9 of each."""
    b, t, h = shape
    rng = np.random.default_rng(0)
    q, k = (rng.standard_normal((b, t, h * 64)).astype(np.float32) * 0.4 for _ in range(2))
    v = rng.standard_normal((b, t, h * 64)).astype(np.float32)
    got = kernel(q, k, v, h)

    def heads(x):
        return bf16(x).reshape(b, t, h, 64).transpose(0, 2, 1, 3)

    scores = heads(q) @ heads(k).transpose(0, 1, 3, 2)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    want = (weights / weights.sum(-1, keepdims=True)) @ heads(v)
    assert got.shape == q.shape
    assert rel_err(got, want.transpose(0, 2, 1, 3).reshape(b, t, h * 64)) < 1e-2


def test_kernel_encoder_gives_the_graphs_features(sessions):
    """The encoder cut around the kernel answers as the fused encoder graph, one window or
    several; bfloat16 attention is the only difference."""
    plain, cut = sessions
    assert isinstance(cut.encoder_graph, KernelEncoder)
    assert isinstance(plain.encoder_graph, Graph)
    mel = np.random.default_rng(1).standard_normal((3, 80, 3000)).astype(np.float32)
    got, want = cut.encode(mel), plain.encode(mel)
    assert got.shape == want.shape == (3, 1500, 384)
    assert rel_err(got, want) < 5e-2
    assert np.abs(got - want).mean() < 2e-2 * np.abs(want).mean()


def test_windows_encoded_with_the_kernel_do_not_change_each_other(tiny_model, cache_dir, kernel):
    """int8, as the cpu profile runs it: a window's features are bit-identical alone or beside
    a louder window, so a file's text does not depend on its batch mates."""
    session = load(tiny_model, cache_dir, True, precision="int8")
    assert isinstance(session.encoder_graph, KernelEncoder)
    mel = np.random.default_rng(3).standard_normal((3, 80, 3000)).astype(np.float32)
    mel[1] *= 8.0
    together = session.encode(mel)
    for i in (0, 2):
        np.testing.assert_array_equal(together[i], session.encode(mel[i : i + 1])[0])


def test_the_kernel_transcribes_as_the_graph(cache_dir, kernel):
    """Speech, through the cpu profile: the same words with the kernel as with the graph."""
    from runtime import Runtime

    texts = []
    for on in (False, True):
        options = {"cache_dir": str(cache_dir), "encoder_attention_kernel": on}
        runtime = Runtime(profile="cpu", backend_options=options)
        texts.append(runtime.transcribe(eval_file("jfk.flac")).text)
    assert "ask not what your country can do for you" in texts[1].lower()
    assert texts[0] == texts[1]


def test_encoder_parts_are_made_once(tiny_model, cache_dir, sessions):
    made = sorted(cache_dir.rglob("encoder-fp32-*.part*.onnx"))
    assert len(made) == 5  # four layers of tiny: five parts
    stamps = {p: p.stat().st_mtime_ns for p in made}
    load(tiny_model, cache_dir, True)
    assert {p: p.stat().st_mtime_ns for p in made} == stamps


def test_an_unfused_encoder_or_no_compiler_keeps_the_graph_and_says_why(
    tiny_model, tmp_path, monkeypatch, caplog
):
    session = load(tiny_model, tmp_path, True, fused=False)
    assert isinstance(session.encoder_graph, Graph)  # MatMul + Softmax + MatMul: not cut
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with caplog.at_level(logging.INFO, logger="backends.onnx"):
        session = load(tiny_model, tmp_path, True)
    assert isinstance(session.encoder_graph, Graph)
    messages = [r.getMessage() for r in caplog.records]
    assert any("no C compiler (cc)" in m and "self-attention" in m for m in messages)
    assert not list(tmp_path.rglob("*.so"))


def test_placement_reports_the_parts_as_one_encoder(sessions):
    plain, cut = sessions
    parts = cut.encoder_graph.parts
    counts = [p.placement.nodes["CPUExecutionProvider"] for p in parts]
    assert [p.placement.graph for p in parts] == [f"encoder part {i}" for i in range(len(parts))]
    assert all(n > 0 for n in counts)
    assert cut.encoder_graph.placement.graph == "encoder"
    assert cut.encoder_graph.placement.nodes == {"CPUExecutionProvider": sum(counts)}


def test_the_encoder_parts_share_one_arena():
    """The parts' sessions allocate from one shared ONNX Runtime arena (kept between windows),
    not each their own, nor glibc's heap between the decoder's buffers."""
    from backends.onnx import _on_shared_arena
    from backends.onnx.options import GraphOptions

    spec = _on_shared_arena(GraphOptions(cpu_memory_arena=False, session_config={"a": "1"}))
    assert spec.cpu_memory_arena is True
    assert spec.session_config == {"a": "1", "session.use_env_allocators": "1"}
