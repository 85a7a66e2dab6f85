"""Hardware detection as a table of cheap probes (in the style of vLLM's platform plugins).

Each probe checks one vendor the cheapest way it can, imports nothing heavy at import time,
and returns a `Finding`: what it found, or in plain words why it found nothing. Files are
read under a `root` folder ("/" by default) and platform facts come from a `HostInfo`, so
tests can fake a whole machine in a temporary folder.

    from runtime.hardware import run_probes
    report = run_probes()                 # HardwareReport
    report.get("amd_npu").details         # {"generation": "xdna2", "chip": "Strix Point", ...}
"""

from runtime.hardware.apple import probe_apple
from runtime.hardware.cpu import probe_cpu
from runtime.hardware.finding import Detail, Finding, HardwareReport
from runtime.hardware.host import HostInfo, Runner, run_command
from runtime.hardware.npu import (
    amd_npu_from_windows_ids,
    intel_npu_from_windows_ids,
    probe_amd_npu,
    probe_intel_npu,
)
from runtime.hardware.nvidia import probe_nvidia
from runtime.hardware.probes import (
    BUILTIN_PROBES,
    Probe,
    probe_name,
    run_probes,
    set_probe_name,
)
from runtime.hardware.qualcomm import probe_qualcomm_npu
from runtime.hardware.sysfs import PciDevice, parse_windows_hwids

__all__ = [
    "BUILTIN_PROBES",
    "Detail",
    "Finding",
    "HardwareReport",
    "HostInfo",
    "PciDevice",
    "Probe",
    "Runner",
    "amd_npu_from_windows_ids",
    "intel_npu_from_windows_ids",
    "parse_windows_hwids",
    "probe_amd_npu",
    "probe_apple",
    "probe_cpu",
    "probe_intel_npu",
    "probe_name",
    "probe_nvidia",
    "probe_qualcomm_npu",
    "run_command",
    "run_probes",
    "set_probe_name",
]
