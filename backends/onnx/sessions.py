"""ONNX Runtime sessions built from a graph's manifest and the profile's options, with placement.

Every session is created with the providers the profile asks for, in order, less those this
onnxruntime build lacks (each named in a warning rather than left to ONNX Runtime's silent
fallback), then measured (``placement``). With ``strict_placement`` a missing provider, a provider
that fails to start, or a node left to the CPU is a ``BackendUnavailableError`` instead: the CPU
provider is removed from the list and ONNX Runtime's ``session.disable_cpu_ep_fallback`` config
entry makes session creation fail when the accelerator does not take every node.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends.onnx.manifest import Manifest, TensorSpec
from backends.onnx.options import GraphOptions, ProviderSpec, expand, unset_variables
from backends.onnx.placement import CPU, GraphPlacement, nodes_per_provider
from runtime.errors import BackendUnavailableError

log = logging.getLogger(__name__)
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@dataclass
class Graph:
    """One loaded graph: its session, its manifest and where its nodes run."""

    session: Any  # onnxruntime.InferenceSession
    manifest: Manifest
    placement: GraphPlacement

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(outputs, feeds)

    def run_rows(self, outputs: list[str], feed: str, rows: np.ndarray) -> list[np.ndarray]:
        """``run`` one row of ``rows`` at a time, each writing straight into its slice of the
        batched outputs (I/O binding): no concatenation of the parts afterwards."""
        first = self.session.run(outputs, {feed: rows[:1]})
        batched = [np.empty((len(rows), *a.shape[1:]), a.dtype) for a in first]
        for out, a in zip(batched, first):
            out[0] = a[0]
        binding = self.session.io_binding()
        for i in range(1, len(rows)):
            row = np.ascontiguousarray(rows[i: i + 1])
            binding.bind_cpu_input(feed, row)
            for name, out in zip(outputs, batched):
                binding.bind_output(name, "cpu", 0, out.dtype, out[i: i + 1].shape,
                                    out[i: i + 1].ctypes.data)
            self.session.run_with_iobinding(binding)
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return batched


def _provider_list(specs: list[ProviderSpec], available: list[str], cache_tag: str,
                   warnings: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, options) of the available providers; ${VARS}/~ expanded; cache_key suffixed with
    the graph's tag, so each model and shape gets its own compiled-model cache entry."""
    chosen = []
    for spec in specs:
        if spec.name not in available:
            continue
        options = {}
        for key, value in spec.options.items():
            unset = unset_variables(value)
            if unset:
                warnings.append(f"{spec.name} option {key}: environment variable "
                                f"{', '.join(unset)} is not set ({value!r})")
            value = expand(value)
            options[key] = f"{value}-{cache_tag}" if key == "cache_key" else value
        chosen.append((spec.name, {k: str(v) if isinstance(v, bool) else v
                                   for k, v in options.items()}))
    return chosen


# Worker threads that spin while waiting for work: ONNX Runtime's default, but a transcription
# runs several sessions in turn (encoder, cross K/V, decoder, VAD), each with its own thread pool,
# and on a few cores the threads of the session that just ran spin on the cores the next one
# needs. Off by default (a profile may set it to "1"): 30 LibriSpeech utterances one by one took
# 7.4-7.7 s instead of 8.7-10.4 s on 2 cores, with a third less CPU time (tools/bench_many.py).
SPINNING = "session.intra_op.allow_spinning"


def _session_options(spec: GraphOptions, threads: int | None, strict: bool,
                     profile_dir: str | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # placement is reported by us, measured; keep stderr quiet
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                          OPT_LEVELS[spec.graph_optimization_level])
    intra = spec.intra_op_num_threads if spec.intra_op_num_threads is not None else threads
    if intra:
        so.intra_op_num_threads = intra
    if spec.inter_op_num_threads:
        so.inter_op_num_threads = spec.inter_op_num_threads
    config = {SPINNING: "0", **spec.session_config}
    for key, value in config.items():
        so.add_session_config_entry(key, str(expand(value)))
    if strict:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
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


def _measure(session, manifest: Manifest) -> dict[str, int]:
    """One profiled run (the warm-up); node counts per provider; profiling ends with it."""
    session.run(None, _dummy_feeds(manifest))
    return nodes_per_provider(session.end_profiling())


def open_graph(path: Path, manifest: Manifest, label: str, spec: GraphOptions, *,
               strict: bool = False, check: bool = True, threads: int | None = None,
               cache_tag: str = "") -> Graph:
    """An ONNX Runtime session for the graph at ``path`` with measured placement."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    requested = tuple(p.name for p in spec.providers)
    accelerators = [p for p in requested if p != CPU]
    missing = [p for p in requested if p not in available]
    if strict and missing:
        raise BackendUnavailableError(
            f"{label}: {missing[0]} is not available in this onnxruntime {ort.__version__} "
            f"(it has {', '.join(available)}); install the onnxruntime build that ships it, or "
            f"turn strict placement off to run the {label} on the CPU")
    warnings = [f"{p} not available in onnxruntime {ort.__version__}" for p in missing]
    providers = _provider_list(spec.providers, available, cache_tag, warnings)
    if strict and accelerators:
        providers = [p for p in providers if p[0] != CPU]  # the fallback entry forbids it
    providers = providers or [(CPU, {})]
    profile_dir = tempfile.mkdtemp(prefix="whisper-ort-profile-") if check else None
    try:
        session = _create(path, spec, threads, strict and bool(accelerators), profile_dir,
                          providers, label, warnings)
        nodes = _measure(session, manifest) if check else {}
    finally:
        if profile_dir:
            shutil.rmtree(profile_dir, ignore_errors=True)
    placement = GraphPlacement(label, requested, tuple(session.get_providers()), nodes,
                               tuple(warnings))
    if strict and placement.fell_back:
        raise BackendUnavailableError(
            f"{placement.line()}; strict placement wants every {label} node on "
            f"{accelerators[0]}: check the provider's options and logs, or turn strict "
            f"placement off")
    log.info("%s", placement.line())
    return Graph(session, manifest, placement)


def _create(path: Path, spec: GraphOptions, threads: int | None, strict: bool,
            profile_dir: str | None, providers: list, label: str, warnings: list[str]):
    """Create the session; a provider that fails to start leaves the graph to the CPU (with a
    warning), or is an error under strict placement."""
    import onnxruntime as ort

    so = _session_options(spec, threads, strict, profile_dir)
    try:
        return ort.InferenceSession(str(path), so, providers=[p[0] for p in providers],
                                    provider_options=[p[1] for p in providers])
    except Exception as exc:  # noqa: BLE001  (ONNX Runtime's Fail, EPFail, ... derive from it)
        names = ", ".join(p[0] for p in providers)
        if strict or providers == [(CPU, {})]:
            how = " with strict placement (no CPU fallback)" if strict else ""
            raise BackendUnavailableError(
                f"{label}: ONNX Runtime could not start {names}{how}: {str(exc).strip()}; check "
                f"the provider's installation and options"
                + (", or turn strict placement off" if strict else "")) from exc
        warnings.append(f"{names} failed to start ({str(exc).strip()[:300]}); {label} on {CPU}")
        so = _session_options(spec, threads, False, profile_dir)
        return ort.InferenceSession(str(path), so, providers=[CPU])


def dims_ok(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    """Whether a concrete shape fits a manifest shape (symbolic dimensions match anything)."""
    return len(spec.shape) == len(shape) and all(
        not isinstance(d, int) or d == s for d, s in zip(spec.shape, shape))
