"""The ONNX Runtime backend against the numpy reference: parity, placement honesty, static shapes.

Graphs are exported into a temporary cache per module; the backend is loaded in-process
(``Plugins(extra=[backends.onnx.plugin])``), whether or not its entry point is installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from backends.onnx import OnnxBackend, eps  # noqa: E402
from runtime.backend import LoadOptions  # noqa: E402
from runtime.errors import BackendUnavailableError  # noqa: E402
from tests.conftest import FIXTURES, REPO, eval_file, rel_err  # noqa: E402


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx-cache"))


@pytest.fixture(scope="module")
def onnx_session(tiny_model, cache_dir):
    return OnnxBackend().load(tiny_model, LoadOptions(options={"cache_dir": cache_dir}))


@pytest.fixture(scope="module")
def mel_pair():
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, size=(2, 80, 3000)).astype(np.float32)


@pytest.fixture(scope="module")
def xdna2_options(cache_dir):
    """The xdna2 profile's backend options as the runtime passes them (precision split off)."""
    from runtime.config.profiles import load_profile

    options = dict(load_profile(REPO / "profiles" / "xdna2.toml").backend_options)
    precision = options.pop("precision", "fp32")
    options.pop("device", None)
    return precision, {**options, "cache_dir": cache_dir}


@pytest.fixture(scope="module")
def ref_features(cpu_session, mel_pair):
    """The numpy encoder's features of ``mel_pair`` (computed once: it is the slow part)."""
    return cpu_session.encode(mel_pair)


def first_window_mel(path) -> np.ndarray:
    from runtime.audio.decode import load_audio
    from runtime.audio.mel import log_mel_spectrogram, pad_or_trim

    return log_mel_spectrogram(pad_or_trim(load_audio(path)))[None]


def test_encoder_matches_numpy(onnx_session, ref_features, mel_pair):
    got = onnx_session.encode(mel_pair)
    assert got.shape == (2, 1500, 384) and got.dtype == np.float32
    assert rel_err(got, ref_features) < 1e-4


def test_fused_attention_encoder_matches_numpy(tiny_model, cache_dir, ref_features, mel_pair):
    """The encoder whose self-attention is ONNX Runtime's MultiHeadAttention kernel (the cpu
    profile's) computes the same features, and its manifest and file name say which it is."""
    import onnx

    from backends.onnx.export import cache_root, model_folder

    session = OnnxBackend().load(
        tiny_model, LoadOptions(options={"cache_dir": cache_dir, "fused_attention": True})
    )
    graph = session.encoder_graph
    assert graph.manifest.details["attention"] == "com.microsoft.MultiHeadAttention"
    assert graph.manifest.file == "encoder-fp32-dyn-mha.onnx"
    proto = onnx.load(model_folder(cache_root(cache_dir), tiny_model) / graph.manifest.file)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MultiHeadAttention") == tiny_model.dims.n_audio_layer
    assert "Softmax" not in ops
    assert set(graph.placement.nodes) == {"CPUExecutionProvider"}
    assert not graph.placement.fell_back
    assert rel_err(session.encode(mel_pair), ref_features) < 1e-4


def test_decoder_logits_and_keep_match_numpy(
    onnx_session, cpu_session, ref_features, tiny_tokenizer
):
    features = ref_features
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" ask not")] * 2)
    mine, ref = onnx_session.decoder(features), cpu_session.decoder(features)
    positions = (0, -1)
    assert rel_err(mine.logits(prompt, positions), ref.logits(prompt, positions)) < 1e-4
    for state in (mine, ref):
        state.keep(np.array([1, 1, 0]))
    step = np.array([[300], [301], [302]])
    got, want = mine.logits(step), ref.logits(step)
    assert got.shape == (3, 1, 51864)
    assert rel_err(got, want) < 1e-4


def test_long_prompt_is_read_in_pieces_with_the_same_logits(
    onnx_session, cpu_session, ref_features, tiny_tokenizer
):
    """A prompt longer than ``PROMPT_PIECE`` tokens goes through the decoder graph in pieces
    (ONNX Runtime's arena would otherwise keep the one-call buffers); the logits at the asked
    positions, and every step after, are the numpy backend's."""
    from backends.onnx import decoder as onnx_decoder

    text = tiny_tokenizer.encode(" and so my fellow americans ask not what your country" * 12)
    sot = tiny_tokenizer.special.sot
    prompt = np.array(
        [[tiny_tokenizer.special.sot_prev, *text[:130], sot, tiny_tokenizer.special.no_timestamps]]
        * 2
    )
    mine, ref = onnx_session.decoder(ref_features), cpu_session.decoder(ref_features)
    calls = []
    step = mine._step
    mine._step = lambda tokens, *a: calls.append(tokens.shape[1]) or step(tokens, *a)
    positions = (131, -1)
    assert rel_err(mine.logits(prompt, positions), ref.logits(prompt, positions)) < 1e-4
    piece = onnx_decoder.PROMPT_PIECE
    assert calls == [piece] * (131 // piece) + [prompt.shape[1] - 131 // piece * piece]
    assert mine.length == ref.length == prompt.shape[1]
    got, want = mine.logits(np.array([[300], [301]])), ref.logits(np.array([[300], [301]]))
    assert rel_err(got, want) < 1e-4


@pytest.mark.parametrize(
    "keeps",
    [
        [[0, 2, 3], [1, 2], [1, 0, 0], [0, 2], [1]],  # finished rows first, then beam-like repeats
        [[0, 0, 1, 3], [1, 2, 3], [0, 2], [0, 0]],  # repeats first, then finished rows
    ],
    ids=["drop-then-repeat", "repeat-then-drop"],
)
def test_decoder_keep_sequences_match_numpy(
    onnx_session, cpu_session, ref_features, tiny_tokenizer, keeps
):
    """Rows that finish leave the ONNX state by moving survivors into freed slots (no gather);
    whatever mix of dropping, reordering and repeating rows, the logits stay the numpy
    backend's, row for row."""
    features = np.concatenate([ref_features, ref_features[::-1] * 0.5])  # 4 different windows
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" and so")] * 4)
    mine, ref = onnx_session.decoder(features), cpu_session.decoder(features)
    assert rel_err(mine.logits(prompt), ref.logits(prompt)) < 1e-4
    for n, rows in enumerate(keeps):
        for state in (mine, ref):
            state.keep(np.array(rows))
        step = np.array([[400 + n + r] for r in range(len(rows))])
        got, want = mine.logits(step), ref.logits(step)
        assert got.shape == want.shape == (len(rows), 1, 51864)
        assert rel_err(got, want) < 1e-4, (n, rows)


def _reference_tokens(utt_id: str) -> list[int] | None:
    path = FIXTURES / "reference_tiny_en.json"
    if not path.exists():
        return None
    utts = {u["utt_id"]: u for u in json.loads(path.read_text())["utterances"]}
    return utts[utt_id]["timestamps"]["tokens"] if utt_id in utts else None


@pytest.mark.parametrize(
    "parts,utt_id",
    [(("jfk.flac",), "jfk"), (("librispeech", "1089-134686-0000.flac"), "1089-134686-0000")],
)
def test_same_greedy_tokens_as_numpy(onnx_session, cpu_session, tiny_tokenizer, parts, utt_id):
    from runtime.decoding import DecodingOptions, decode

    mel = first_window_mel(eval_file(*parts))
    options = DecodingOptions(language="en", temperature=0.0)
    mine = decode(onnx_session, onnx_session.encode(mel), tiny_tokenizer, options)[0]
    ref = decode(cpu_session, cpu_session.encode(mel), tiny_tokenizer, options)[0]
    assert mine.tokens == ref.tokens
    reference = _reference_tokens(utt_id)
    if reference is not None:  # openai-whisper's own tokens on the same weights
        assert mine.tokens == reference


def test_missing_provider_falls_back_and_says_so(tiny_model, xdna2_options):
    import backends.onnx.plugin
    from runtime.api import Runtime
    from runtime.plugins import Plugins

    precision, options = xdna2_options
    if "VitisAIExecutionProvider" in eps.available_providers():
        pytest.skip("this machine has the VitisAI provider")
    plugins = Plugins(blocked=["onnx"], extra=[backends.onnx.plugin])
    rt = Runtime(
        tiny_model, backend="onnx", precision=precision, backend_options=options, plugins=plugins
    )
    session = rt.session
    line = "VitisAIExecutionProvider not available; encoder on CPUExecutionProvider"
    assert line in session.describe()
    assert session.placement["encoder"].fell_back and session.placement.fell_back
    assert session.capabilities.encoder_batch_sizes == (1,)
    text = rt.transcribe(eval_file("jfk.flac")).text.lower()
    assert "ask not what your country can do for you" in text


def test_strict_placement_fails_clearly(tiny_model, xdna2_options):
    precision, options = xdna2_options
    if "VitisAIExecutionProvider" in eps.available_providers():
        pytest.skip("this machine has the VitisAI provider")
    with pytest.raises(BackendUnavailableError, match="VitisAIExecutionProvider.*strict"):
        OnnxBackend().load(
            tiny_model,
            LoadOptions(precision=precision, options={**options, "strict_placement": True}),
        )


def test_static_batch_pads_the_last_batch(tiny_model, cache_dir, onnx_session, mel_pair):
    session = OnnxBackend().load(
        tiny_model,
        LoadOptions(
            options={
                "cache_dir": cache_dir,
                "static_shapes": True,
                "encoder_batch_size": 4,
                "check_placement": False,
            }
        ),
    )
    assert session.encoder_graph.manifest.input("mel").shape == (4, 80, 3000)
    assert session.capabilities.encoder_batch_sizes == (4,)
    mel = np.concatenate([mel_pair, mel_pair[::-1], mel_pair[:1]])  # 5 windows: 4 + 1 padded
    got = session.encode(mel)
    assert got.shape == (5, 1500, 384)
    want = onnx_session.encode(mel_pair)
    assert rel_err(got[[0, 1, 3, 4]], want[[0, 1, 0, 0]]) < 1e-4  # the 4-row GEMMs round apart


def test_options_are_validated(tiny_model, cache_dir):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="providerz"):
        OnnxBackend().load(tiny_model, LoadOptions(options={"encoder": {"providerz": []}}))
    with pytest.raises(ValidationError, match="static_shapes"):
        OnnxBackend().load(tiny_model, LoadOptions(options={"encoder_batch_size": 2}))


def test_a_precision_the_backend_lacks_is_refused_before_loading(tiny_model):
    """The runtime checks the precision against the backend's capabilities, once, for every
    backend (none of them repeats the check)."""
    from runtime.api import Runtime
    from runtime.errors import UnsupportedRequestError

    with pytest.raises(
        UnsupportedRequestError, match="backend 'onnx' runs fp32, fp16, int8, bf16, not 'int3'"
    ):
        Runtime(tiny_model, backend="onnx", precision="int3").load()


def test_provider_options_expand_variables(monkeypatch):
    from backends.onnx.options import ProviderSpec
    from backends.onnx.sessions import OpenRequest, _expanded

    monkeypatch.setenv("WR_TEST_DIR", "/opt/ryzen")
    monkeypatch.delenv("WR_UNSET_DIR", raising=False)
    spec = ProviderSpec(
        name="CPUExecutionProvider",
        options={
            "config_file": "${WR_TEST_DIR}/vaip.json",
            "cache_dir": "~/c",
            "other": "$WR_UNSET_DIR/x",
            "cache_key": "enc",
            "level": 3,
            "profile": "${PROFILE_DIR}/cfg.json",
        },
    )
    warnings: list[str] = []
    request = OpenRequest(cache_tag="tiny-b1", variables=(("PROFILE_DIR", "/p"),))
    opts = _expanded(spec, request, warnings)
    assert opts["config_file"] == "/opt/ryzen/vaip.json" and not opts["cache_dir"].startswith("~")
    assert opts["cache_key"] == "enc-tiny-b1" and opts["level"] == "3"
    assert opts["profile"] == "/p/cfg.json"
    assert len(warnings) == 1 and "WR_UNSET_DIR" in warnings[0]


def test_provider_options_refuse_booleans():
    """Providers spell flags differently ("1" for QNN, "True" for OpenVINO): a TOML boolean
    would be turned into one spelling silently, so it is refused with the reason."""
    from pydantic import ValidationError

    from backends.onnx.options import ProviderSpec

    with pytest.raises(
        ValidationError, match="enable_htp_fp16_precision: write provider options as strings"
    ):
        ProviderSpec(name="QNNExecutionProvider", options={"enable_htp_fp16_precision": True})


def test_emulation_merges_options_and_device_types():
    from backends.onnx.options import ProviderSpec

    spec = ProviderSpec(
        name="QNNExecutionProvider",
        device_types=["NPU"],
        options={"backend_type": "htp", "htp_performance_mode": "burst"},
        emulation={"device_types": ["CPU"], "options": {"soc_model": "60"}},
    )
    emulated = spec.emulated()
    assert emulated.device_types == ["CPU"]
    assert emulated.options == {
        "backend_type": "htp",
        "htp_performance_mode": "burst",
        "soc_model": "60",
    }
    assert spec.options == {"backend_type": "htp", "htp_performance_mode": "burst"}
    plain = ProviderSpec(name="CPUExecutionProvider")
    assert plain.emulated() is plain


def test_manifest_names_every_tensor(onnx_session):
    import onnx

    for graph in (onnx_session.encoder_graph, onnx_session.cross_graph, onnx_session.decoder_graph):
        m = graph.manifest
        assert m.model_digest == onnx_session.model.digest() and m.precision == "fp32"
        session_inputs = {i.name for i in graph.session.get_inputs()}
        assert session_inputs == {t.name for t in m.inputs}
        assert {o.name for o in graph.session.get_outputs()} == {t.name for t in m.outputs}
    assert onnx.__version__  # the graphs were built by the onnx package, no torch


def test_available_lists_providers():
    availability = OnnxBackend().available()
    assert availability and "CPUExecutionProvider" in availability.reason


def _cross_kv_graph(tiny_model, cache_dir):
    from backends.onnx.export import cache_root, ensure_graph, model_folder

    path, manifest = ensure_graph(
        tiny_model, "cross_kv", "fp32", None, model_folder(cache_root(cache_dir), tiny_model)
    )
    return path.parent / manifest.file, manifest


def test_a_present_provider_that_refuses_nodes_is_measured(tiny_model, cache_dir):
    """The Azure provider ships in the stock wheel and runs no ordinary node: a real refusal."""
    from backends.onnx.options import GraphOptions
    from backends.onnx.sessions import OpenRequest, open_graph

    azure = "AzureExecutionProvider"
    if azure not in eps.available_providers():
        pytest.skip("this onnxruntime build has no AzureExecutionProvider")
    path, manifest = _cross_kv_graph(tiny_model, cache_dir)
    spec = GraphOptions(providers=[{"name": azure}, {"name": "CPUExecutionProvider"}])
    graph = open_graph(path, manifest, "cross_kv", spec)
    assert graph.placement.fell_back and graph.placement.nodes.get(azure, 0) == 0
    assert "AzureExecutionProvider took none" in graph.placement.line()
    with pytest.raises(BackendUnavailableError, match="cross_kv.*AzureExecutionProvider"):
        open_graph(path, manifest, "cross_kv", spec, OpenRequest(strict=True))


def test_cache_is_rebuilt_for_other_weights_or_exporter(tiny_model, cache_dir):
    from backends.onnx.export import ensure_graph
    from backends.onnx.manifest import Manifest

    path, manifest = _cross_kv_graph(tiny_model, cache_dir)
    json_path = path.with_suffix(".json")
    assert ensure_graph(tiny_model, "cross_kv", "fp32", None, path.parent)[1] == manifest
    stale = Manifest.from_dict({**manifest.to_dict(), "model_digest": "0" * 16})
    stale.write(json_path)
    assert ensure_graph(tiny_model, "cross_kv", "fp32", None, path.parent)[1] == manifest
    assert Manifest.read(json_path) == manifest


@pytest.mark.parametrize("fused", [False, True], ids=["standard-attention", "fused-attention"])
def test_int8_windows_do_not_change_each_other(tiny_model, cache_dir, fused):
    """Dynamic int8 quantization scales activations per call: a loud and a quiet window encoded
    together must still get exactly the features each gets alone."""
    options = {"cache_dir": str(cache_dir), "fused_attention": fused}
    session = OnnxBackend().load(tiny_model, LoadOptions(precision="int8", options=options))
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(3, 80, 3000)).astype(np.float32)
    mel[1] *= 0.05
    together = session.encode(mel)
    alone = np.concatenate([session.encode(mel[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, alone)


def test_int8_decoder_rows_do_not_change_each_other(tiny_model, cache_dir, tiny_tokenizer):
    """The int8 decoder-side graphs quantize activations per row (MatMulNBits): a row's logits
    are bit-identical alone or batched with a louder row, so a file's transcript does not
    depend on which other files or requests share its batch."""
    from backends.onnx.blockwise import DETAIL, supported
    from backends.onnx.export import QUANTIZATION

    if not supported():
        pytest.skip("this onnxruntime has no 8-bit MatMulNBits kernels (needs >= 1.23)")
    session = OnnxBackend().load(
        tiny_model, LoadOptions(precision="int8", options={"cache_dir": str(cache_dir)})
    )
    assert session.decoder_graph.manifest.details["quantization"] == DETAIL
    assert session.cross_graph.manifest.details["quantization"] == QUANTIZATION  # per window
    rng = np.random.default_rng(3)
    features = rng.normal(size=(3, 1500, 384)).astype(np.float32)
    features[1] *= 8.0
    prompt = np.array([[tiny_tokenizer.special.sot] + tiny_tokenizer.encode(" so it")] * 3)
    together = session.decoder(features).logits(prompt)
    alone = [session.decoder(features[i : i + 1]).logits(prompt[i : i + 1]) for i in range(3)]
    for i in (0, 2):
        np.testing.assert_array_equal(together[i], alone[i][0])


def test_graph_outputs_are_written_by_their_nodes_not_copied():
    """A graph output is its producer's own output (no Identity copy of KV caches per step);
    Identity only for an input or a value exposed twice."""
    import onnxruntime as ort

    from backends.onnx.graph import GraphBuilder

    g = GraphBuilder()
    x = g.add_input("x", np.float32, [2])
    y = g.op("Relu", [x], "y")
    z = g.op("Neg", [y], "z")
    for value, name in ((y, "first"), (y, "second"), (z, "third"), (x, "echo")):
        g.add_output(value, name, np.float32, [2])
    proto = g.build("t")
    assert [n.op_type for n in proto.graph.node].count("Identity") == 2
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    first, second, third, echo = session.run(None, {"x": np.array([-1, 2], np.float32)})
    assert first.tolist() == second.tolist() == [0, 2] and third.tolist() == [0, -2]
    assert echo.tolist() == [-1, 2]


def test_blockwise_needs_an_onnxruntime_with_8bit_kernels(monkeypatch):
    """Older (vendor) ONNX Runtime builds keep per-call dynamic quantization for the decoder."""
    import backends.onnx.blockwise as blockwise
    from backends.onnx.export import QUANTIZATION, quantization_detail

    assert blockwise.supported("1.23.0") and blockwise.supported("1.31.1")
    assert not blockwise.supported("1.22.2") and not blockwise.supported("1.20.0")
    monkeypatch.setattr(blockwise, "supported", lambda version=None: False)
    assert quantization_detail("decoder", "int8") == QUANTIZATION
    assert quantization_detail("decoder", "fp32") is None


def test_blockwise_int8_matmul_is_close_to_float():
    """``MatMulNBits`` from ``quantize_matmuls``: within int8 rounding of the float product."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from backends.onnx.blockwise import quantize_matmuls

    rng = np.random.default_rng(0)
    w = (rng.normal(size=(64, 48)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 48])],
        [numpy_helper.from_array(w, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    assert quantize_matmuls(proto) == 1
    assert [n.op_type for n in proto.graph.node] == ["MatMulNBits"]
    assert "w" not in {t.name for t in proto.graph.initializer}
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(5, 64)).astype(np.float32)
    got = session.run(None, {"x": x})[0]
    assert rel_err(got, x @ w) < 0.02


def test_tied_embedding_rows_come_from_the_int8_projection():
    """``gather_tied``: an fp16 embedding table's Gather + Cast becomes a GatherBlockQuantized of
    the output projection's int8 blocks; the rows are within int8 rounding of the table and
    are exactly the projection's dequantized weights, and the float table is gone."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from backends.onnx.blockwise import gather_tied, quantize_matmuls, quantize_weight

    rng = np.random.default_rng(1)
    table = (rng.normal(size=(50, 64)) * 0.1).astype(np.float16)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["rows16"], name="g"),
        helper.make_node("Cast", ["rows16"], ["rows"], to=TensorProto.FLOAT, name="c"),
        helper.make_node("MatMul", ["rows", "emb_t"], ["logits"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
        [
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["b", "t", 64]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "t", 50]),
        ],
        [
            numpy_helper.from_array(table, "emb"),
            numpy_helper.from_array(table.astype(np.float32).T.copy(), "emb_t"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    assert not gather_tied(proto, "emb", "emb_t")  # nothing quantized yet
    assert quantize_matmuls(proto) == 1 and gather_tied(proto, "emb", "emb_t")
    assert "emb" not in {t.name for t in proto.graph.initializer}
    assert [n.op_type for n in proto.graph.node] == [
        "GatherBlockQuantized",
        "Reshape",
        "MatMulNBits",
    ]
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[3, 0, 49], [7, 7, 1]], np.int64)
    rows = session.run(["rows"], {"ids": ids})[0]
    packed, scales = quantize_weight(table.astype(np.float32).T)
    dequantized = (packed.astype(np.float32) - 128) * scales.reshape(50, -1, 1)
    np.testing.assert_allclose(rows, dequantized.reshape(50, 64)[ids], rtol=1e-6)
    assert rel_err(rows, table.astype(np.float32)[ids]) < 0.02


def test_graphs_are_exported_one_at_a_time_and_opened_side_by_side(
    tiny_model, cache_dir, monkeypatch
):
    """Exports (which hold the weights) run in the loading thread, one after another; the
    three sessions are then created at once, each in its own thread."""
    import threading
    import time

    import backends.onnx.export as export
    import backends.onnx.sessions as sessions

    events: list[tuple[str, str, float]] = []
    ensure, open_graph = export.ensure_graph, sessions.open_graph

    def ensuring(model, graph, *args, **kwargs):
        events.append(("export", threading.current_thread().name, time.perf_counter()))
        return ensure(model, graph, *args, **kwargs)

    def opening(path, manifest, graph, *args):
        events.append(("open", threading.current_thread().name, time.perf_counter()))
        time.sleep(0.3)
        return open_graph(path, manifest, graph, *args)

    monkeypatch.setattr(export, "ensure_graph", ensuring)
    monkeypatch.setattr(sessions, "open_graph", opening)
    session = OnnxBackend().load(
        tiny_model, LoadOptions(precision="int8", options={"cache_dir": str(cache_dir)})
    )
    assert session.decoder_graph.manifest.graph == "decoder"
    exports = [e for e in events if e[0] == "export"]
    opens = [e for e in events if e[0] == "open"]
    assert len(exports) == 3 and {name for _, name, _ in exports} == {"MainThread"}
    assert len(opens) == 3 and len({name for _, name, _ in opens}) == 3
    assert "MainThread" not in {name for _, name, _ in opens}
    assert max(at for *_, at in opens) - min(at for *_, at in opens) < 0.3  # none waited
    assert min(at for *_, at in opens) > max(at for *_, at in exports)
