"""ONNX Runtime sessions built from a graph's manifest and the profile's options, with placement.

Every session is created with the providers the profile asks for, in order, less those this
onnxruntime build lacks (each named in a warning rather than left to ONNX Runtime's silent
fallback), then measured (``placement``). Built-in providers are attached by name; plugin EPs
(``backends.onnx.eps``) through their EP devices (``add_provider_for_devices``).

ONNX Runtime's Python layer has a fallback of its own: when a provider fails, it prints an "EP
Error" banner **on stdout** and retries on the CPU. It is turned off (``enable_fallback=0``), so
a failure reaches ``_create``, which says why in one warning line and retries on the CPU, or,
with ``strict_placement``, raises ``BackendUnavailableError``: then the CPU provider is removed
from the list and ``session.disable_cpu_ep_fallback`` makes session creation fail when the
accelerator does not take every node. Compiling EPs also say themselves what they took
(``ep_reports``); that report goes into the placement.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.onnx import eps
from backends.onnx.adapters import NO_CPU_FALLBACK, EpReport, adapter
from backends.onnx.manifest import Manifest
from backends.onnx.options import GraphOptions, ProviderSpec, expand, unset_variables
from backends.onnx.placement import CPU, GraphPlacement, node_ops
from runtime.errors import BackendUnavailableError

log = logging.getLogger(__name__)
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass
class Graph:
    """One loaded graph: its session, its manifest and where its nodes run."""

    session: Any  # onnxruntime.InferenceSession
    manifest: Manifest
    placement: GraphPlacement

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(outputs, feeds)

    def run_into(
        self, outputs: list[str], feeds: dict[str, np.ndarray], into: list[np.ndarray]
    ) -> None:
        """``run``, each output written straight into its array of ``into`` (contiguous, of the
        output's shape and dtype) through I/O binding."""
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name, out in zip(outputs, into, strict=True):
            assert out.flags.c_contiguous, f"{name}: output arrays must be contiguous"
            binding.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
        self.session.run_with_iobinding(binding)

    def run_rows(
        self,
        outputs: list[str],
        feed: str,
        rows: np.ndarray,
        into: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """``run`` one row of ``rows`` at a time, each writing straight into its slice of the
        batched outputs (I/O binding): no concatenation of the parts afterwards. ``into``: the
        arrays to write (of len(rows) rows), else new ones."""
        return run_rows(self, outputs, feed, rows, into)


def run_rows(
    graph: Any, outputs: list[str], feed: str, rows: np.ndarray, into: list[np.ndarray] | None
) -> list[np.ndarray]:
    """``Graph.run_rows`` for anything with ``run`` and ``run_into`` (a graph, or graphs cut
    around a kernel): the first row's outputs give the batched arrays' shapes."""
    start = 0
    if into is None:
        first = graph.run(outputs, {feed: rows[:1]})
        into = [np.empty((len(rows), *a.shape[1:]), a.dtype) for a in first]
        for out, a in zip(into, first):
            out[0] = a[0]
        start = 1
    for i in range(start, len(rows)):
        graph.run_into(outputs, {feed: rows[i : i + 1]}, [out[i : i + 1] for out in into])
    return into


@dataclass
class Provider:
    """A provider resolved for this process: its options as ONNX Runtime takes them, and for a
    plugin EP the EP devices it is attached to (None: a built-in provider, attached by name)."""

    name: str
    options: dict[str, str]
    devices: list[Any] | None = None


@dataclass(frozen=True)
class OpenRequest:
    """Everything ``open_graph`` needs besides the graph: how strictly, how measured, and the
    values substituted into provider options."""

    strict: bool = False
    check: bool = True
    cache_tag: str = ""  # suffix of a provider's cache_key: one compiled model per graph
    emulate: bool = False  # providers as their ``emulation`` says
    variables: tuple[tuple[str, str], ...] = ()  # ${NAME} values, e.g. PROFILE_DIR


def _resolve(
    spec: ProviderSpec, request: OpenRequest, warnings: list[str]
) -> tuple[Provider | None, str | None]:
    """The provider ready to attach, or None and why it cannot be (not in this build, or a
    plugin EP without a device of the wanted type)."""
    import onnxruntime as ort

    if request.emulate:
        spec = spec.emulated()
    if spec.name != CPU and spec.name not in ort.get_available_providers():
        eps.register_plugin(spec.name, spec.plugin)
    options = _expanded(spec, request, warnings)
    plugin = eps.plugin(spec.name)
    if plugin is None:
        if spec.name not in eps.available_providers():
            return None, f"{spec.name} not available in onnxruntime {ort.__version__}"
        return Provider(spec.name, options), None
    found = eps.ep_devices(spec.name)
    wanted = [d for d in found if not spec.device_types or eps.device_type(d) in spec.device_types]
    if not wanted:
        listed = ", ".join(sorted({eps.device_type(d) for d in found})) or "none"
        return None, (
            f"{spec.name} ({plugin.module} {plugin.version}) lists no "
            f"{'/'.join(spec.device_types)} device (it lists: {listed})"
        )
    return Provider(spec.name, options, wanted), None


def _expanded(spec: ProviderSpec, request: OpenRequest, warnings: list[str]) -> dict[str, str]:
    """Options with ${VARS}/~ expanded, as text; cache_key suffixed with the graph's tag, so
    each model and shape gets its own compiled-model cache entry."""
    variables = dict(request.variables)
    options = {}
    for key, value in spec.options.items():
        unset = unset_variables(value, variables)
        if unset:
            warnings.append(
                f"{spec.name} option {key}: environment variable "
                f"{', '.join(unset)} is not set ({value!r})"
            )
        text = str(expand(value, variables))
        options[key] = f"{text}-{request.cache_tag}" if key == "cache_key" else text
    return options


# Worker threads that spin while waiting for work: ONNX Runtime's default, but a transcription
# runs several sessions in turn (encoder, cross K/V, decoder, VAD), each with its own thread pool,
# and on a few cores the threads of the session that just ran spin on the cores the next one
# needs. Off by default (a profile may set it to "1"): 30 LibriSpeech utterances one by one took
# 7.4-7.7 s instead of 8.7-10.4 s on 2 cores, with a third less CPU time (tools/bench_many.py).
SPINNING = "session.intra_op.allow_spinning"


def _session_options(
    spec: GraphOptions, strict: bool, profile_dir: str | None, cpu_only: bool = False
):
    import onnxruntime as ort

    so = ort.SessionOptions()
    # placement is reported by us, measured, and an EP's error is in the exception we report:
    # keep stderr quiet (ERROR lines with --verbose)
    so.log_severity_level = 3 if log.isEnabledFor(logging.INFO) else 4
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, OPT_LEVELS[spec.graph_optimization_level]
    )
    so.enable_cpu_mem_arena = spec.cpu_memory_arena
    if spec.intra_op_num_threads:
        so.intra_op_num_threads = spec.intra_op_num_threads
    if spec.inter_op_num_threads:
        so.inter_op_num_threads = spec.inter_op_num_threads
    config = {SPINNING: "0", **spec.session_config}
    if cpu_only:  # the retry on the CPU: no accelerator-only entries
        config = {
            k: v
            for k, v in config.items()
            if k != NO_CPU_FALLBACK and not k.startswith("ep.context")
        }
    for key, value in config.items():
        so.add_session_config_entry(key, str(expand(value)))
    if strict:
        so.add_session_config_entry(NO_CPU_FALLBACK, "1")
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(profile_dir) / "placement")
    return so


def _dummy_feeds(manifest: Manifest) -> dict[str, np.ndarray]:
    """Zeros for every input: symbolic batch -> static batch or 1, cache length -> 0, others 1."""

    def size(dim: int | str) -> int:
        if isinstance(dim, int):
            return dim
        return 0 if dim == "past" else (manifest.static_batch or 1) if dim == "batch" else 1

    return {t.name: np.zeros([size(d) for d in t.shape], dtype=t.dtype) for t in manifest.inputs}


def _measure(session, manifest: Manifest, skip: bool = False) -> dict[str, dict[str, int]]:
    """One profiled run (the warm-up); node counts per provider and op type; profiling ends
    with it (also when the run is skipped, so later runs are never profiled)."""
    if skip:
        session.end_profiling()
        return {}
    with eps.native_stdout_to_log():
        session.run(None, _dummy_feeds(manifest))
    return node_ops(session.end_profiling())


def open_graph(
    path: Path,
    manifest: Manifest,
    label: str,
    spec: GraphOptions,
    request: OpenRequest = OpenRequest(),
) -> Graph:
    """An ONNX Runtime session for the graph at ``path`` with measured placement."""
    strict = request.strict
    requested = tuple(p.name for p in spec.providers)
    accelerators = [p for p in requested if p != CPU]
    warnings: list[str] = []
    providers = _providers(spec, request, label, warnings)
    workdir = Path(tempfile.mkdtemp(prefix="whisper-ort-"))
    try:
        providers = [
            Provider(
                p.name,
                adapter(p.name).prepare(p.options, workdir, p.devices is not None),
                p.devices,
            )
            for p in providers
        ]
        # nothing but the CPU asked for: every node runs there, no profiled run to count them
        # (it cost a full encoder window, a third of the load time)
        measured = request.check and not set(requested) <= {CPU}
        session, failed = _create(
            path, spec, request, str(workdir) if measured else None, providers, label
        )
        reports = _ep_reports(session, providers, workdir, spec) if request.check else ()
        ops = _measure(session, manifest, skip=_reported(reports, session)) if measured else {}
        nodes = (
            {p: sum(counts.values()) for p, counts in ops.items()}
            if measured
            else _cpu_nodes(manifest)
            if request.check
            else {}
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    placement = GraphPlacement(
        label, requested, tuple(session.get_providers()), nodes, tuple(warnings), reports, failed
    )
    placement = dataclasses.replace(placement, cpu_ops=ops.get(CPU, {}))
    if strict and placement.fell_back:
        raise BackendUnavailableError(
            f"{placement.line()}; strict placement wants every {label} node on "
            f"{accelerators[0]}: check the provider's options and logs, or turn strict "
            f"placement off"
        )
    if placement.fell_back or warnings:  # one line, on stderr, whatever the log level
        log.warning("%s", placement.line() + (f" ({'; '.join(warnings)})" if warnings else ""))
    else:
        log.info("%s", placement.line())
    return Graph(session, manifest, placement)


def _providers(
    spec: GraphOptions, request: OpenRequest, label: str, warnings: list[str]
) -> list[Provider]:
    """The providers to attach, in order; why others cannot be goes to ``warnings`` (or raises
    under strict placement)."""
    providers: list[Provider] = []
    for provider_spec in spec.providers:
        provider, why_not = _resolve(provider_spec, request, warnings)
        if provider is None:
            if request.strict:
                raise BackendUnavailableError(
                    f"{label}: {why_not}; install the onnxruntime build or plugin package that "
                    f"ships it, or turn strict placement off to run the {label} on the CPU"
                )
            warnings.append(str(why_not))
        else:
            providers.append(provider)
    if _no_cpu_fallback(request, [p.name for p in spec.providers]):
        providers = [p for p in providers if p.name != CPU]  # the fallback entry forbids it
    return providers or [Provider(CPU, {})]


def _no_cpu_fallback(request: OpenRequest, providers: list[str]) -> bool:
    """Whether the session is built without the CPU (strict placement, an accelerator asked
    for). Not for a provider that leaves shape computations to the CPU by design (CUDA):
    that session keeps the CPU, and strict placement judges its measured op types."""
    accelerators = [p for p in providers if p != CPU]
    return (
        request.strict
        and bool(accelerators)
        and not any(adapter(p).shapes_on_cpu for p in accelerators)
    )


def _cpu_nodes(manifest: Manifest) -> dict[str, int]:
    """A CPU-only session's placement: all the exported graph's nodes (before ONNX Runtime's
    fusions) on the CPU."""
    return (
        {CPU: int(manifest.details.get("graph_nodes", 0))}
        if manifest.details.get("graph_nodes")
        else {}
    )


def _reported(reports: tuple[EpReport, ...], session) -> bool:
    """Whether every accelerator of the session counted its nodes itself when it compiled (QNN's
    op trace, VitisAI's report): the profiled warm-up run would add nothing but its time (a
    minute on the HTP simulator)."""
    accelerators = [p for p in session.get_providers() if p != CPU]
    counted = {r.provider for r in reports if r.total is not None}
    return bool(accelerators) and set(accelerators) <= counted


def _ep_reports(
    session, providers: list[Provider], workdir: Path, spec: GraphOptions
) -> tuple[EpReport, ...]:
    active = set(session.get_providers())
    config = dict(spec.session_config)
    found = [
        adapter(p.name).read(p.options, workdir, config) for p in providers if p.name in active
    ]
    return tuple(r for r in found if r is not None)


def _create(
    path: Path,
    spec: GraphOptions,
    request: OpenRequest,
    profile_dir: str | None,
    providers: list[Provider],
    label: str,
) -> tuple[Any, str]:
    """Create the session, and say why its providers failed to start when it had to retry on
    the CPU (under strict placement that is an error instead)."""
    strict = _no_cpu_fallback(request, [p.name for p in providers])
    cpu_only = all(p.name == CPU for p in providers)  # every accelerator missing: no EP entries
    so = _session_options(spec, strict, profile_dir, cpu_only)
    try:
        return _new_session(path, so, providers), ""
    except Exception as exc:  # noqa: BLE001  (ONNX Runtime's Fail, EPFail, ... derive from it)
        names = ", ".join(p.name for p in providers)
        reason = ep_error(exc)
        if strict or [p.name for p in providers] == [CPU]:
            how = " with strict placement (no CPU fallback)" if strict else ""
            raise BackendUnavailableError(
                f"{label}: ONNX Runtime could not start {names}{how}: {reason}; check "
                f"the provider's installation and options"
                + (", or turn strict placement off" if strict else "")
            ) from exc
        so = _session_options(spec, False, profile_dir, cpu_only=True)
        return _new_session(path, so, [Provider(CPU, {})]), reason


def ep_error(exc: BaseException) -> str:
    """ONNX Runtime's error in one short line: 'FAIL: FP16 precision mode is enabled but ...'.
    Errors raised through a plugin EP nest a second '[ONNXRuntimeError] : code : NAME :' after a
    source path and C++ signature; the EP's own words are the last part."""
    text = " ".join(str(exc).split())
    last = re.split(r"\[ONNXRuntimeError\] : ", text)[-1]
    match = re.match(r"\d+ : (\w+) : (.*)", last)
    message = f"{match.group(1)}: {match.group(2)}" if match else last
    return message[:300]


def _new_session(path: Path, so, providers: list[Provider]):
    """Plugin EPs through their devices (with the CPU's device unless the fallback entry is
    set); built-in providers by name. Native banners on stdout go to the log."""
    import onnxruntime as ort

    with eps.native_stdout_to_log(), _creating(providers):
        if any(p.devices is not None for p in providers):
            for p in providers:
                devices = p.devices if p.devices is not None else eps.ep_devices(p.name)
                if devices:
                    so.add_provider_for_devices(devices, p.options)
            return ort.InferenceSession(str(path), so, enable_fallback=0)
        return ort.InferenceSession(
            str(path),
            so,
            providers=[p.name for p in providers],
            provider_options=[p.options for p in providers],
            enable_fallback=0,
        )


def _creating(providers: list[Provider]):
    """The context the providers' adapters need while the session is created."""
    import contextlib

    stack = contextlib.ExitStack()
    for p in providers:
        stack.enter_context(adapter(p.name).creating())
    return stack
