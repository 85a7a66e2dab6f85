"""Placement lines, profile parsing, manifests and the graph cache location (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.onnx.export import CACHE_ENV, cache_root, graph_stem
from backends.onnx.manifest import Manifest, TensorSpec
from backends.onnx.placement import GraphPlacement, PlacementReport, nodes_per_provider

VITIS, CPU = "VitisAIExecutionProvider", "CPUExecutionProvider"


def test_line_when_every_node_is_on_the_accelerator():
    p = GraphPlacement("encoder", (VITIS, CPU), (VITIS, CPU), {VITIS: 225})
    assert p.line() == "encoder: 225/225 nodes on VitisAIExecutionProvider"
    assert not p.fell_back


def test_line_when_the_provider_is_missing():
    p = GraphPlacement("encoder", (VITIS, CPU), (CPU,), {CPU: 109})
    assert p.line() == (
        "VitisAIExecutionProvider not available; encoder on CPUExecutionProvider (109/109 nodes)"
    )
    assert p.fell_back


def test_line_when_the_provider_refuses_some_nodes():
    p = GraphPlacement("encoder", (VITIS, CPU), (VITIS, CPU), {VITIS: 200, CPU: 25})
    assert (
        p.line() == "encoder: 200/225 nodes on VitisAIExecutionProvider, 25 on CPUExecutionProvider"
    )
    assert p.fell_back


def test_report_lines_and_dict():
    report = PlacementReport(
        (
            GraphPlacement("encoder", (VITIS, CPU), (CPU,), {CPU: 10}, ("VitisAI missing",)),
            GraphPlacement("decoder", (CPU,), (CPU,), {CPU: 5}, ("VitisAI missing",)),
        )
    )
    assert report.lines()[-1] == "warning: VitisAI missing" and len(report.lines()) == 3
    assert (
        report.fell_back
        and report["decoder"].line() == "decoder: 5/5 nodes on CPUExecutionProvider"
    )
    data = report.to_dict()
    assert data["graphs"][0]["line"].startswith("VitisAIExecutionProvider not available")
    json.dumps(data)


def test_nodes_are_counted_once_per_node(tmp_path: Path):
    events = [
        {"cat": "Session", "name": "model_run"},
        {"cat": "Node", "name": "a_kernel_time", "args": {"provider": VITIS}},
        {"cat": "Node", "name": "a_kernel_time", "args": {"provider": VITIS}},
        {"cat": "Node", "name": "a_fence_before", "args": {}},
        {"cat": "Node", "name": "b_kernel_time", "args": {"provider": CPU}},
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    assert nodes_per_provider(path) == {VITIS: 1, CPU: 1}


def test_manifest_round_trip_and_roles(tmp_path: Path):
    specs = (
        TensorSpec("self_k.1", "self_k", "float32", ("batch", 6, 64, "past"), layer=1),
        TensorSpec("self_k.0", "self_k", "float32", ("batch", 6, 64, "past"), layer=0),
        TensorSpec("tokens", "tokens", "int64", ("batch", "tokens")),
    )
    m = Manifest("decoder", "decoder-fp32.onnx", "fp32", "tiny.en", "abc", specs, specs[2:])
    m.write(tmp_path / "m.json")
    back = Manifest.read(tmp_path / "m.json")
    assert back == m
    assert [t.name for t in back.inputs_of("self_k")] == ["self_k.0", "self_k.1"]
    assert back.output("tokens").shape == ("batch", "tokens")
    with pytest.raises(ValueError, match="role 'mel'"):
        back.input("mel")


def test_cache_root_precedence(monkeypatch, tmp_path: Path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "whisper-runtime" / "onnx"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root("~/x") == Path("~/x").expanduser()


def test_graph_file_names():
    assert graph_stem("encoder", "int8", 4) == "encoder-int8-b4"
    assert graph_stem("encoder", "bf16", None) == "encoder-fp32-dyn"  # bf16: the fp32 graph
    assert graph_stem("decoder", "fp32", None) == "decoder-fp32"


def test_line_names_a_provider_that_took_no_nodes():
    azure = "AzureExecutionProvider"
    p = GraphPlacement("cross_kv", (azure, CPU), (azure, CPU), {CPU: 28})
    assert p.line() == (
        "cross_kv: 28/28 nodes on CPUExecutionProvider (AzureExecutionProvider took none)"
    )
    assert p.fell_back


def test_worker_threads_do_not_spin_unless_the_profile_asks():
    """Several sessions run in turn on few cores: spinning threads would steal them."""
    from backends.onnx.options import GraphOptions
    from backends.onnx.sessions import SPINNING, _session_options

    default = _session_options(GraphOptions(), False, None)
    assert default.get_session_config_entry(SPINNING) == "0"
    asked = _session_options(GraphOptions(session_config={SPINNING: "1"}), False, None)
    assert asked.get_session_config_entry(SPINNING) == "1"


# --- what compiling EPs report ----------------------------------------------------------------

QNN = "QNNExecutionProvider"
QNN_TRACE = {  # the shape of onnxruntime-qnn 2.7's qnn_op_trace.json (schema 2), trimmed
    "backend_type": "htp",
    "model_name": "encoder-fp32-b1.onnx",
    "schema_version": 2,
    "soc_traces": [{"compilation_target": {"device_id": 0, "htp_arch": "V73", "soc_model": 60}}],
    "subgraph_traces": [{"graph_name": "QNN_1", "op_mappings": [], "tensor_mappings": []}],
    "summary": {
        "fusion_count": {"OrtNodeUnit": 68},
        "qnn_subgraphs": 1,
        "supported_nodes": 150,
        "total_onnx_nodes": 150,
        "total_qnn_ops": 114,
        "unsupported_nodes": 0,
    },
    "unsupported_nodes": [],
}


def test_qnn_op_trace_is_the_placement_of_a_compiled_graph():
    from backends.onnx.adapters import qnn_report

    report = qnn_report(QNN_TRACE, {"backend_type": "htp"})
    assert report.complete and report.device == "HTP (soc_model 60, V73)"
    p = GraphPlacement("encoder", (QNN, CPU), (QNN, CPU), {}, (), (report,))
    assert p.line() == (
        "encoder: QNNExecutionProvider on HTP (soc_model 60, V73): 150/150 ONNX "
        "nodes (QNN op trace)"
    )
    assert not p.fell_back and p.device == "HTP (soc_model 60, V73)"
    partial = qnn_report(
        {
            **QNN_TRACE,
            "summary": {**QNN_TRACE["summary"], "supported_nodes": 148, "unsupported_nodes": 2},
            "unsupported_nodes": [{"name": "n1", "op_type": "Erf"}, "n2"],
        },
        {},
    )
    p = GraphPlacement("encoder", (QNN, CPU), (QNN, CPU), {}, (), (partial,))
    assert p.fell_back and "148/150 ONNX nodes, not supported: Erf, n2" in p.line()


def test_vitisai_report_counts_npu_and_cpu_nodes():
    from backends.onnx.adapters import vitisai_report

    report = vitisai_report(
        {
            "deviceStat": [
                {"name": "all", "nodeNum": 400, "supportedOpType": ["::Add", "::Conv"]},
                {
                    "name": "CPU",
                    "nodeNum": 2,
                    "supportedOpType": ["::DequantizeLinear", "::QuantizeLinear"],
                },
                {"name": "NPU", "nodeNum": 398, "supportedOpType": ["::Add", "::Conv"]},
            ]
        }
    )
    assert (report.supported, report.total) == (398, 400) and report.complete is False
    assert report.unsupported == ("::DequantizeLinear", "::QuantizeLinear")
    assert vitisai_report({"deviceStat": [{"name": "NPU", "nodeNum": 225}]}).complete


def test_openvino_says_which_device_and_whether_it_could_fall_back():
    from backends.onnx.adapters import NO_CPU_FALLBACK, adapter

    ov = "OpenVINOExecutionProvider"
    sure = adapter(ov).read({"device_type": "NPU"}, Path("."), {NO_CPU_FALLBACK: "1"})
    p = GraphPlacement("encoder", (ov,), (ov, CPU), {ov: 1}, (), (sure,))
    assert p.line() == (
        "encoder: OpenVINOExecutionProvider on NPU: 1 compiled partition "
        "(OpenVINO device_type; no fallback to its CPU plugin)"
    )
    unsure = adapter(ov).read({"device_type": "NPU"}, Path("."), {})
    assert unsure.device == "NPU or CPU" and NO_CPU_FALLBACK in unsure.source
    # attached as a plugin EP, the device comes from its EP device: device_type is refused
    assert adapter(ov).prepare(
        {"device_type": "NPU", "load_config": "{}"}, Path("."), plugin=True
    ) == {"load_config": "{}"}


# --- a GPU provider keeps shape computations on the CPU by design ------------------------------
CUDA = "CUDAExecutionProvider"


def test_a_cuda_session_with_only_shape_ops_on_the_cpu_is_healthy():
    p = GraphPlacement(
        "decoder",
        (CUDA, CPU),
        (CUDA, CPU),
        {CUDA: 180, CPU: 20},
        cpu_ops={"Shape": 8, "Range": 2, "Squeeze": 4, "Gather": 4, "Less": 1, "Where": 1},
    )
    assert p.shape_work_on_cpu and not p.fell_back
    assert p.line() == (
        "decoder: 180/200 nodes on CUDAExecutionProvider, 20 on CPUExecutionProvider "
        "(10%, shape computations only: not a fallback)"
    )
    assert not PlacementReport((p,)).fell_back


def test_a_matmul_on_the_cpu_is_a_fallback():
    p = GraphPlacement(
        "decoder",
        (CUDA, CPU),
        (CUDA, CPU),
        {CUDA: 178, CPU: 22},
        cpu_ops={"Shape": 20, "MatMul": 2},
    )
    assert not p.shape_work_on_cpu and p.fell_back
    assert "not a fallback" not in p.line()


@pytest.mark.parametrize(
    "nodes,cpu_ops",
    [
        ({CUDA: 180, CPU: 20}, {}),  # op types not measured: counts alone decide, as before
        ({CUDA: 180, CPU: 20}, {"Shape": 15}),  # op types of some CPU nodes unknown
        ({CPU: 200}, {"Shape": 200}),  # the GPU took nothing
    ],
)
def test_shape_ops_excuse_nothing_they_do_not_account_for(nodes, cpu_ops):
    p = GraphPlacement("decoder", (CUDA, CPU), (CUDA, CPU), nodes, cpu_ops=cpu_ops)
    assert not p.shape_work_on_cpu and p.fell_back


def test_profile_op_types_are_counted_per_provider(tmp_path: Path):
    from backends.onnx.placement import node_ops

    events = [
        {"cat": "Node", "name": "mm_kernel_time", "args": {"provider": CUDA, "op_name": "MatMul"}},
        {"cat": "Node", "name": "mm_kernel_time", "args": {"provider": CUDA, "op_name": "MatMul"}},
        {"cat": "Node", "name": "s_kernel_time", "args": {"provider": CPU, "op_name": "Shape"}},
        {"cat": "Node", "name": "r_kernel_time", "args": {"provider": CPU}},
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    assert node_ops(path) == {CUDA: {"MatMul": 1}, CPU: {"Shape": 1, "?": 1}}
    assert nodes_per_provider(path) == {CUDA: 1, CPU: 2}


def test_strict_cuda_sessions_keep_the_cpu_provider_for_shape_ops():
    """session.disable_cpu_ep_fallback would refuse a healthy CUDA session (its shape nodes are
    on the CPU): CUDA's adapter says so, and strict placement judges the measured op types."""
    from backends.onnx.adapters import adapter

    assert adapter(CUDA).shapes_on_cpu
    assert not adapter(VITIS).shapes_on_cpu and not adapter(CPU).shapes_on_cpu
    from backends.onnx.sessions import OpenRequest, _no_cpu_fallback

    strict = OpenRequest(strict=True)
    assert not _no_cpu_fallback(strict, [CUDA, CPU])
    assert _no_cpu_fallback(strict, [VITIS, CPU])
    assert not _no_cpu_fallback(OpenRequest(), [VITIS, CPU])
