"""The table of built-in probes and `run_probes`, which runs a table into a report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from runtime.hardware.apple import probe_apple
from runtime.hardware.cpu import probe_cpu
from runtime.hardware.finding import Finding, HardwareReport
from runtime.hardware.host import ROOT
from runtime.hardware.npu import probe_amd_npu, probe_intel_npu
from runtime.hardware.nvidia import probe_nvidia
from runtime.hardware.qualcomm import probe_qualcomm_npu

logger = logging.getLogger(__name__)

# A probe does the cheapest check for one vendor and returns what it found or why not.
# It takes the root folder that /sys, /proc and /dev are read under ("/" in production).
Probe = Callable[[Path], Finding]

BUILTIN_PROBES: Mapping[str, Probe] = {
    "cpu": probe_cpu,
    "apple": probe_apple,
    "amd_npu": probe_amd_npu,
    "intel_npu": probe_intel_npu,
    "qualcomm_npu": probe_qualcomm_npu,
    "nvidia": probe_nvidia,
}


NAME_ATTRIBUTE = "probe_name"  # the function attribute a probe's name travels in


def probe_name(probe: Probe) -> str:
    """A probe's name: its `probe_name` attribute, else its function name without "probe_"."""
    name = getattr(probe, NAME_ATTRIBUTE, None) or getattr(probe, "__name__", "")
    return str(name).removeprefix("probe_") or repr(probe)


def set_probe_name(probe: Callable[..., Finding], name: str) -> None:
    """Give ``probe`` (a function) the name profiles refer to it by, as its `probe_name`
    attribute; AttributeError where it takes no attributes (a bound method, a builtin)."""
    setattr(probe, NAME_ATTRIBUTE, name)


def run_probes(
    root: Path = ROOT, probes: Mapping[str, Probe] | Iterable[Probe] | None = None
) -> HardwareReport:
    """Run every probe (the built-in table by default) and collect their findings.

    `probes` is a table by name, or a list of probes named by `probe_name()` (as plugins
    return them). A probe that raises does not stop the others: its exception is logged
    and becomes a finding with present=False and the exception as the reason, so
    `runtime detect` shows it.
    """
    if probes is None:
        probes = BUILTIN_PROBES
    table = probes if isinstance(probes, Mapping) else {probe_name(p): p for p in probes}
    findings: dict[str, Finding] = {}
    for name, probe in table.items():
        try:
            finding = probe(root)
        except Exception as exc:
            logger.warning("hardware probe %r failed", name, exc_info=True)
            finding = Finding(name, False, {}, f"probe failed: {type(exc).__name__}: {exc}")
        if finding.name != name:  # the table's name is the one profiles refer to
            finding = Finding(name, finding.present, finding.details, finding.reason)
        findings[name] = finding
    return HardwareReport(findings)
