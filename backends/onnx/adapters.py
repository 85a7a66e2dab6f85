"""What each execution provider needs beyond its profile options, and what it reports it took.

The placement that ONNX Runtime cannot count:

VitisAI, OpenVINO and QNN compile each partition they take into one fused node, so ONNX Runtime's
profiler sees "1/1 nodes" however many operators went to the NPU. Each EP has its own report:

- QNN: ``enable_framework_op_trace`` writes ``qnn_op_trace.json`` (to ``framework_op_trace_dir``)
  with the ONNX nodes it supports, those it does not, and the SoC it compiled for.
- VitisAI: ``XLNX_ONNX_EP_REPORT_FILE`` names an operator-assignment report written into the
  compile cache (``enable_cache_file_io_in_mem=0``), whose ``deviceStat`` counts nodes per device.
- OpenVINO: no report file; with ``session.disable_cpu_ep_fallback=1`` an NPU compile failure
  is an error instead of a silent recompile on OpenVINO's CPU plugin, so a session that opens
  ran on the ``device_type`` it was given (taken from the session's provider options).

An adapter adds the options its EP needs before the session opens (and drops those the EP
refuses when attached as a plugin) and reads the report after.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

QNN = "QNNExecutionProvider"
VITISAI = "VitisAIExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
VITISAI_REPORT_ENV = "XLNX_ONNX_EP_REPORT_FILE"
VITISAI_REPORT_NAME = "vitisai_ep_report.json"
NO_CPU_FALLBACK = "session.disable_cpu_ep_fallback"


@dataclass(frozen=True)
class EpReport:
    """An EP's own account of a graph: where it ran, and how many ONNX nodes it took."""

    provider: str
    device: str  # e.g. "HTP (soc_model 60, V73)", "NPU", "CPU"
    source: str  # where the numbers come from, e.g. "QNN op trace"
    supported: int | None = None  # ONNX nodes the EP took
    total: int | None = None  # ONNX nodes in the graph it was given
    unsupported: tuple[str, ...] = ()  # op types (or node names) left to other providers
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool | None:
        """Whether the EP took every node (None when its report does not say)."""
        if self.supported is None or self.total is None:
            return None
        return self.supported >= self.total and not self.unsupported

    def line(self) -> str:
        counts = (
            f"{self.supported}/{self.total} ONNX nodes"
            if self.total is not None
            else "node count not reported"
        )
        left = f", not supported: {', '.join(self.unsupported[:6])}" if self.unsupported else ""
        return f"{self.provider} on {self.device}: {counts}{left} ({self.source})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EpAdapter:
    """No report: providers that run nodes one by one (CPU, CUDA) are counted by ORT's profiler."""

    name = ""
    # ONNX Runtime places this EP's shape computations on the CPU on purpose: the session keeps
    # the CPU provider even under strict placement, which then judges the measured op types
    shapes_on_cpu = False

    def prepare(self, options: dict[str, str], workdir: Path, plugin: bool) -> dict[str, str]:
        """The options to attach the EP with (``plugin``: through its EP devices)."""
        return options

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        """Held while the session is created (an EP may read process state then)."""
        yield

    def read(
        self, options: dict[str, str], workdir: Path, config: dict[str, str]
    ) -> EpReport | None:
        """The EP's report after the session ran once (None when it wrote none)."""
        return None


class QnnAdapter(EpAdapter):
    name = QNN

    def prepare(self, options: dict[str, str], workdir: Path, plugin: bool) -> dict[str, str]:
        return {**options, "enable_framework_op_trace": "1", "framework_op_trace_dir": str(workdir)}

    def read(
        self, options: dict[str, str], workdir: Path, config: dict[str, str]
    ) -> EpReport | None:
        path = workdir / "qnn_op_trace.json"
        if not path.exists():
            return None
        return qnn_report(json.loads(path.read_text(encoding="utf-8")), options)


def qnn_report(trace: dict[str, Any], options: dict[str, str]) -> EpReport:
    """An EpReport from QNN's op trace (schema 2: summary, unsupported_nodes, soc_traces)."""
    summary = trace.get("summary", {})
    targets = [s.get("compilation_target", {}) for s in trace.get("soc_traces", [])]
    target = targets[0] if targets else {}
    backend = str(trace.get("backend_type", options.get("backend_type", "htp"))).upper()
    soc = ", ".join(
        str(x)
        for x in (
            f"soc_model {target['soc_model']}" if "soc_model" in target else None,
            target.get("htp_arch"),
        )
        if x
    )
    unsupported = tuple(
        str(n.get("op_type") or n.get("name") or n) if isinstance(n, dict) else str(n)
        for n in trace.get("unsupported_nodes", [])
    )
    return EpReport(
        QNN,
        f"{backend} ({soc})" if soc else backend,
        "QNN op trace",
        summary.get("supported_nodes"),
        summary.get("total_onnx_nodes"),
        unsupported,
        {"qnn_graphs": summary.get("qnn_subgraphs"), "qnn_ops": summary.get("total_qnn_ops")},
    )


class VitisAiAdapter(EpAdapter):
    """The operator-assignment report: ``XLNX_ONNX_EP_REPORT_FILE`` is read when the session is
    created, and the file lands in ``cache_dir/cache_key``."""

    name = VITISAI
    _env_lock = threading.Lock()  # the variable is process-wide: one session at a time

    def prepare(self, options: dict[str, str], workdir: Path, plugin: bool) -> dict[str, str]:
        return {**options, "enable_cache_file_io_in_mem": "0"}

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        with self._env_lock:
            before = os.environ.get(VITISAI_REPORT_ENV)
            os.environ[VITISAI_REPORT_ENV] = VITISAI_REPORT_NAME
            try:
                yield
            finally:
                if before is None:
                    os.environ.pop(VITISAI_REPORT_ENV, None)
                else:
                    os.environ[VITISAI_REPORT_ENV] = before

    def read(
        self, options: dict[str, str], workdir: Path, config: dict[str, str]
    ) -> EpReport | None:
        folder = Path(options.get("cache_dir", ".")) / options.get("cache_key", "")
        candidates = [folder / VITISAI_REPORT_NAME, Path(VITISAI_REPORT_NAME)]
        for path in candidates:
            if path.exists():
                return vitisai_report(json.loads(path.read_text(encoding="utf-8")))
        return None


def vitisai_report(report: dict[str, Any]) -> EpReport:
    """An EpReport from VitisAI's operator-assignment report: ``deviceStat`` lists
    ``{"name": "NPU"|"CPU"|"all", "nodeNum": n, "supportedOpType": [...]}``."""
    stats = {str(d.get("name", "")).upper(): d for d in report.get("deviceStat", [])}
    npu = stats.get("NPU", {})
    cpu = stats.get("CPU", {})
    total = stats.get("ALL", {}).get("nodeNum")
    on_npu = npu.get("nodeNum")
    if total is None and on_npu is not None:
        total = on_npu + int(cpu.get("nodeNum", 0))
    return EpReport(
        VITISAI,
        "NPU",
        "VitisAI operator-assignment report",
        on_npu,
        total,
        tuple(cpu.get("supportedOpType", []) if cpu.get("nodeNum") else ()),
    )


class OpenVinoAdapter(EpAdapter):
    """The device OpenVINO compiled for. With ``session.disable_cpu_ep_fallback`` an NPU or GPU
    compile failure fails the session, so a session that opened runs on ``device_type``;
    without it, OpenVINO may have recompiled on its CPU plugin, and the report says so."""

    name = OPENVINO
    # attached through its EP devices, OpenVINO takes the device from the device and refuses
    # these options (they go into load_config instead)
    PLUGIN_REFUSES = (
        "device_type",
        "device_id",
        "device_luid",
        "context",
        "disable_dynamic_shapes",
    )

    def prepare(self, options: dict[str, str], workdir: Path, plugin: bool) -> dict[str, str]:
        if not plugin:
            return options
        return {k: v for k, v in options.items() if k not in self.PLUGIN_REFUSES}

    def read(
        self, options: dict[str, str], workdir: Path, config: dict[str, str]
    ) -> EpReport | None:
        device = options.get("device_type", "CPU")
        if device.upper().startswith("CPU") or config.get(NO_CPU_FALLBACK) == "1":
            return EpReport(OPENVINO, device, "OpenVINO device_type; no fallback to its CPU plugin")
        return EpReport(
            OPENVINO,
            f"{device} or CPU",
            "OpenVINO may recompile on its CPU plugin "
            f'when {device} fails: set {NO_CPU_FALLBACK} = "1" to know',
        )


class CudaAdapter(EpAdapter):
    """CUDA runs nodes one by one (ONNX Runtime's profiler counts them) and hands the nodes
    that compute shapes (Shape, Range, Gather on shapes, the mask) to the CPU by design."""

    name = "CUDAExecutionProvider"
    shapes_on_cpu = True


ADAPTERS: dict[str, EpAdapter] = {
    a.name: a for a in (QnnAdapter(), VitisAiAdapter(), OpenVinoAdapter(), CudaAdapter())
}


def adapter(provider: str) -> EpAdapter:
    return ADAPTERS.get(provider, EpAdapter())
