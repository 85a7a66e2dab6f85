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

from backends.onnx import (
    OnnxBackend,  # noqa: E402
    blockwise,  # noqa: E402
)
from backends.onnx.decoder import PROMPT_PIECE  # noqa: E402
from backends.onnx.kernel import load_kernel, load_logits, to_logit_panels, to_panels  # noqa: E402
from backends.onnx.sessions import Graph  # noqa: E402
from backends.onnx.split import KernelDecoder  # noqa: E402
from runtime.backend import LoadOptions  # noqa: E402
from tests.conftest import built_kernel, rel_err  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-kernel-cache")


@pytest.fixture(scope="module")
def kernel(cache_dir):
    return built_kernel(load_kernel, cache_dir / "kernels")


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


@pytest.fixture(scope="module")
def logits_kernel(cache_dir):
    return built_kernel(load_logits, cache_dir / "kernels")


def nbits_session(weight: np.ndarray):
    """ONNX Runtime's ``MatMulNBits`` (8 bits, blocks of 32, accuracy level 4) on ``weight``, as
    the int8 decoder's logits run."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="logits")],
        "logits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert blockwise.quantize_matmuls(model) == 1
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return session, inits["w_q8"], inits["w_scales"]


@pytest.mark.parametrize("rows", [1, 3, 8, 11])
def test_logits_kernel_is_onnx_runtimes_int8_arithmetic(logits_kernel, rows):
    """The same logits as ``MatMulNBits`` at accuracy level 4 (activations int8 per row and
    block of 32), for 1, a few, 8 and more than 8 rows and outputs not a multiple of 16."""
    rng = np.random.default_rng(4)
    k, n = 96, 1000
    session, q8, scales = nbits_session((rng.standard_normal((k, n)) / 10).astype(np.float32))
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[0, :32] *= 50.0  # one block of one row much louder: its scale must be its own
    want = session.run(["y"], {"x": x})[0]
    weights, block_scales = to_logit_panels(q8, scales)
    got = logits_kernel(x, weights, block_scales, n)
    assert got.shape == (rows, n)
    assert rel_err(got, want) < 1e-5
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_logits_kernel_ends_the_int8_decoder(tiny_model, cache_dir, kernel, logits_kernel):
    """With the logits kernel the last part stops at the final layer norm and the kernel
    projects: the same logits as the part's own projection, rows still independent; the two
    sets of parts are cached side by side."""
    options = {"cache_dir": str(cache_dir), "cross_attention_kernel": True}
    plain, cut = (
        OnnxBackend().load(
            tiny_model,
            LoadOptions(precision="int8", options={**options, "logits_kernel": on}),
        )
        for on in (False, True)
    )
    assert cut.decoder_graph._logits is not None and plain.decoder_graph._logits is None
    features = np.random.default_rng(5).normal(size=(3, 1500, 384)).astype(np.float32)
    features[1] *= 8.0
    prompt = np.array([[50257, 50362, 843, 523]] * 3)
    want = plain.decoder(features).logits(prompt, (0, -1))
    got = cut.decoder(features).logits(prompt, (0, -1))
    assert got.shape == want.shape == (3, 2, 51864)
    assert rel_err(got, want) < 1e-5 and np.array_equal(got.argmax(-1), want.argmax(-1))
    alone = cut.decoder(features[2:]).logits(prompt[2:], (0, -1))
    np.testing.assert_array_equal(got[2], alone[0])
    folder = next(cache_dir.rglob("decoder-int8.onnx")).parent
    for n in (0, 4):
        assert (folder / f"decoder-int8.part{n}.onnx").exists()
        assert (folder / f"decoder-int8.part{n}.hidden.onnx").exists()


def test_the_logits_kernels_panels_are_the_only_token_table(tiny_model, cache_dir, logits_kernel):
    """With the logits kernel, part 0 takes the embedded tokens, read from the kernel's panels
    exactly as ``GatherBlockQuantized`` reads the tied table, so the int8 table is held once."""
    import onnx
    from onnx import numpy_helper

    from backends.onnx.split import embed_tokens

    options = {"cache_dir": str(cache_dir), "cross_attention_kernel": True, "logits_kernel": True}
    OnnxBackend().load(tiny_model, LoadOptions(precision="int8", options=options))
    folder = next(cache_dir.rglob("decoder-int8.onnx")).parent
    part0 = onnx.load(str(folder / "decoder-int8.part0.hidden.onnx"))
    assert not [t.name for t in part0.graph.initializer if "token_embedding" in t.name]
    assert "dec.embed" in [i.name for i in part0.graph.input]
    whole = onnx.load(str(folder / "decoder-int8.onnx"))
    arrays = {t.name: numpy_helper.to_array(t) for t in whole.graph.initializer}
    q8 = arrays["decoder.token_embedding.weight_t_q8"]
    scales = arrays["decoder.token_embedding.weight_gather_scales"]
    tokens = np.array([[0, 15, 16, 50256], [220, 51863, 7, 7]])
    want = (q8[tokens].astype(np.float32) - 128.0) * scales[tokens]
    panels = (np.load(folder / f"decoder-int8.logits-{n}.npy") for n in ("weights", "scales"))
    got = embed_tokens(tokens, *panels)
    np.testing.assert_array_equal(got, want.reshape(2, 4, -1))


def test_a_prompts_pieces_stop_at_the_last_layers_keys_and_values(sessions, monkeypatch):
    """A piece of a long prompt computes no logits, so its last layer stops at its keys and
    values (a part of its own) and neither that layer's cross-attention nor the last part runs;
    the prompt's logits are the graph's all the same (the last piece runs whole), and the keys
    and values it leaves are the same as one call's."""
    plain, cut = sessions
    decoder = cut.decoder_graph
    ran = {"last part": 0, "last layer": 0, "its keys and values": 0, "kernel": 0}
    last, layer, kv = decoder.parts[-1], decoder.parts[-2], decoder._kv_part
    monkeypatch.setattr(last, "run", counted(ran, "last part", last.run))
    monkeypatch.setattr(layer, "run", counted(ran, "last layer", layer.run))
    monkeypatch.setattr(kv, "run", counted(ran, "its keys and values", kv.run))
    monkeypatch.setattr(decoder, "kernel", counted(ran, "kernel", decoder.kernel))
    features = np.random.default_rng(6).normal(size=(1, 1500, 384)).astype(np.float32)
    prompt = np.arange(500, 500 + 2 * PROMPT_PIECE + 5)[None]  # two pieces, then the rest
    state, reference = cut.decoder(features), plain.decoder(features)
    got, want = state.logits(prompt), reference.logits(prompt)
    n_layers = len(decoder.parts) - 1
    assert ran == {
        "last part": 1,
        "last layer": 1,
        "its keys and values": 2,
        "kernel": 2 * (n_layers - 1) + n_layers,
    }
    assert {o.name for o in kv.session.get_outputs()} == {
        f"new_k.{n_layers - 1}",
        f"new_v.{n_layers - 1}",
    }
    assert rel_err(got, want) < 2e-3 and np.array_equal(got.argmax(-1), want.argmax(-1))
    step = np.array([[1000]])
    assert rel_err(state.logits(step), reference.logits(step)) < 2e-3


def counted(ran: dict[str, int], key: str, function):
    def run(*args, **kwargs):
        ran[key] += 1
        return function(*args, **kwargs)

    return run


def test_the_masks_are_made_once_by_part_zero(sessions):
    """Every layer's self-attention masks come from part 0: the later parts take them instead
    of making them again from the tokens and lengths at every step."""
    from backends.onnx.split import MASKS

    _, cut = sessions
    inputs = [{i.name for i in p.session.get_inputs()} for p in cut.decoder_graph.parts]
    assert {"tokens", "lengths"} <= inputs[0] and not set(MASKS) & inputs[0]
    for later in inputs[1:-1]:
        assert set(MASKS) <= later and not {"tokens", "lengths"} & later
