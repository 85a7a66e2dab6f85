"""Where a graph's nodes really run, measured rather than assumed.

ONNX Runtime silently drops a requested execution provider that this build lacks (a Python
``UserWarning`` at most) and silently gives the CPU every node a provider refuses. So after
creating a session we (1) compare the requested providers with ``session.get_providers()`` and
(2) run the graph once with ONNX Runtime's profiler on (``SessionOptions.enable_profiling``) and
count the node events of that run by their ``args.provider`` field, then switch the profiler off
(``InferenceSession.end_profiling()``), so later runs are not profiled. That one run doubles as
the warm-up. The node counts are those of the optimized graph that really executes (after ONNX
Runtime's fusions), so they are smaller than the exported graph's node count. A compiling EP
(VitisAI, OpenVINO, QNN) runs each partition it took as one fused node, so its count says little:
its own report (``ep_reports``), when it has one, says how many ONNX nodes it took and where.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backends.onnx.adapters import EpReport

CPU = "CPUExecutionProvider"
# Operators that carry a transformer's arithmetic. A GPU provider leaves shape computations
# (Shape, Range, Squeeze, Gather on shapes, the decoder's mask) to the CPU on purpose (ONNX
# Runtime's CUDA EP: "CPU-preferred nodes"); only one of these on the CPU is a real fallback.
COMPUTE_OPS = frozenset(
    {
        "Attention",
        "BiasGelu",
        "Conv",
        "FastGelu",
        "Gelu",
        "Gemm",
        "GroupQueryAttention",
        "LayerNormalization",
        "MatMul",
        "MatMulInteger",
        "MatMulNBits",
        "MultiHeadAttention",
        "QLinearMatMul",
        "SkipLayerNormalization",
        "Softmax",
        "DynamicQuantizeMatMul",
        "FusedMatMul",
    }
)


@dataclass(frozen=True)
class GraphPlacement:
    """Placement of one graph: what was asked for, what ONNX Runtime kept, where nodes ran."""

    graph: str  # "encoder", "decoder", "cross_kv"
    requested: tuple[str, ...]
    active: tuple[str, ...]  # session.get_providers()
    nodes: dict[str, int] = field(default_factory=dict)  # provider -> nodes run; {} if unmeasured
    warnings: tuple[str, ...] = ()  # missing providers, failed registrations, unset variables
    reports: tuple[EpReport, ...] = ()  # what compiling EPs say they took
    failed: str = ""  # why the requested providers failed to start (the graph then runs on CPU)
    cpu_ops: dict[str, int] = field(default_factory=dict)  # op type -> nodes run on the CPU

    @property
    def shape_work_on_cpu(self) -> bool:
        """True when the first requested accelerator ran nodes and the CPU's nodes (measured
        op types) carry no arithmetic of the model (``COMPUTE_OPS``): a healthy GPU session."""
        wanted = [p for p in self.requested if p != CPU]
        on_cpu = self.nodes.get(CPU, 0)
        return bool(
            wanted
            and self.nodes.get(wanted[0], 0)
            and on_cpu
            and sum(self.cpu_ops.values()) == on_cpu
            and not COMPUTE_OPS & set(self.cpu_ops)
        )

    @property
    def total_nodes(self) -> int:
        return sum(self.nodes.values())

    @property
    def main_provider(self) -> str:
        """The provider that ran most nodes (or the first active one when unmeasured)."""
        if self.nodes:
            return max(self.nodes.items(), key=lambda kv: kv[1])[0]
        return self.active[0] if self.active else CPU

    @property
    def fell_back(self) -> bool:
        """True when a requested accelerator is missing or left nodes to another provider."""
        wanted = [p for p in self.requested if p != CPU]
        if not wanted:
            return False
        first = wanted[0]
        if any(r.complete is False for r in self.reports if r.provider == first):
            return True
        return first not in self.active or (
            bool(self.nodes)
            and self.nodes.get(first, 0) < self.total_nodes
            and not self.shape_work_on_cpu
        )

    def line(self) -> str:
        """'encoder: 225/225 nodes on VitisAIExecutionProvider', or the fallback in one line:
        'VitisAIExecutionProvider not available; encoder on CPUExecutionProvider (61/61 nodes)',
        'QNNExecutionProvider failed to start (<why>); encoder on CPUExecutionProvider (...)'."""
        missing = [p for p in self.requested if p not in self.active]
        counts = self._counts()
        if missing:
            why = f"failed to start ({self.failed})" if self.failed else "not available"
            head = f"{', '.join(missing)} {why}; {self.graph} on {self.main_provider}"
            if len(self.nodes) == 1:
                return f"{head} ({self.total_nodes}/{self.total_nodes} nodes)"
            return head + (f" ({counts})" if counts else "")
        if self.reports:
            others = [
                f"{n} on {p}"
                for p, n in self.nodes.items()
                if n and p not in {r.provider for r in self.reports}
            ]
            return (
                f"{self.graph}: "
                + "; ".join(self._report_line(r) for r in self.reports)
                + (f"; also {', '.join(others)}" if others else "")
            )
        if counts:
            idle = [p for p in self.requested if p != CPU and not self.nodes.get(p)]
            if self.shape_work_on_cpu:
                share = self.nodes[CPU] / self.total_nodes
                counts += f" ({share:.0%}, shape computations only: not a fallback)"
            return f"{self.graph}: {counts}" + (f" ({', '.join(idle)} took none)" if idle else "")
        return f"{self.graph}: on {', '.join(self.active)} (placement not measured)"

    def _report_line(self, report: EpReport) -> str:
        """An EP report; one that counts no ONNX nodes (OpenVINO) gets ONNX Runtime's count of
        the compiled partitions it ran (nodes on other providers follow as 'also ...')."""
        if report.total is None and self.nodes:
            n = self.nodes.get(report.provider, 0)
            return (
                f"{report.provider} on {report.device}: {n} compiled "
                f"partition{'' if n == 1 else 's'} ({report.source})"
            )
        return report.line()

    def _counts(self) -> str:
        if not self.nodes:
            return ""
        total = self.total_nodes
        ranked = sorted(self.nodes.items(), key=lambda kv: -kv[1])
        head = f"{ranked[0][1]}/{total} nodes on {ranked[0][0]}"
        return ", ".join([head] + [f"{n} on {p}" for p, n in ranked[1:]])

    def to_dict(self) -> dict:
        return {**asdict(self), "line": self.line(), "fell_back": self.fell_back}

    @property
    def device(self) -> str | None:
        """The device an EP report names for the first requested accelerator, if any."""
        wanted = [p for p in self.requested if p != CPU]
        return next((r.device for r in self.reports if wanted and r.provider == wanted[0]), None)


@dataclass(frozen=True)
class PlacementReport:
    """Placement of every graph of a session: ``describe()``, ``runtime detect``, --verbose."""

    graphs: tuple[GraphPlacement, ...]

    def lines(self) -> list[str]:
        """One line per graph, then each warning once."""
        out = [g.line() for g in self.graphs]
        warnings = dict.fromkeys(w for g in self.graphs for w in g.warnings)  # first seen order
        return out + [f"warning: {w}" for w in warnings]

    def summary(self) -> str:
        return "; ".join(g.line() for g in self.graphs)

    @property
    def fell_back(self) -> bool:
        return any(g.fell_back for g in self.graphs)

    def __getitem__(self, graph: str) -> GraphPlacement:
        for g in self.graphs:
            if g.graph == graph:
                return g
        raise KeyError(graph)

    def to_dict(self) -> dict:
        return {"graphs": [g.to_dict() for g in self.graphs], "fell_back": self.fell_back}


def nodes_per_provider(profile_file: str | Path) -> dict[str, int]:
    """Distinct nodes per provider among the node events of an ONNX Runtime profile (JSON)."""
    return {p: sum(ops.values()) for p, ops in node_ops(profile_file).items()}


def node_ops(profile_file: str | Path) -> dict[str, dict[str, int]]:
    """Distinct nodes per provider and op type (``args.op_name``; "?" when absent) among the
    node events of an ONNX Runtime profile (JSON)."""
    events = json.loads(Path(profile_file).read_text(encoding="utf-8"))
    where: dict[str, tuple[str, str]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        if args.get("provider"):
            where[event["name"]] = (args["provider"], str(args.get("op_name", "?")))
    out: dict[str, dict[str, int]] = {}
    for (provider, op), n in Counter(where.values()).items():
        out.setdefault(provider, {})[op] = n
    return out
