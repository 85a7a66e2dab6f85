"""The Qualcomm probe: a Snapdragon Hexagon NPU (HTP) that the QNN execution provider can reach.

What is checked, cheapest first, all without loading any Qualcomm library:

- Windows on Arm: platform.machine() is ARM64 and the processor name (PROCESSOR_IDENTIFIER)
  says Qualcomm or Snapdragon. Every Snapdragon X / 8cx PC has a Hexagon NPU.
- Linux / Android: the HTP sits on the compute DSP, reached through FastRPC, so a
  `/dev/fastrpc-cdsp*` node (upstream kernels) or `/dev/adsprpc-smd*` (Android's msm-fastrpc
  driver) means the driver is loaded. (A node alone does not prove that the HTP's signed skel loads:
  the QNN EP's session then fails, and the runtime says why.) `/sys/devices/soc0/{family,machine}`
  names the SoC (family "Snapdragon", machine e.g. "SM8650"); a Snapdragon SoC without the FastRPC
  node is reported as "driver not loaded".
"""

from __future__ import annotations

from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo
from runtime.hardware.sysfs import read_text, under

QUALCOMM_NAMES = ("qualcomm", "snapdragon")


def probe_qualcomm_npu(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """A Qualcomm Hexagon NPU on Windows on Arm or on a Linux/Android Snapdragon."""
    host = host or HostInfo.detect(root)
    if host.system == "Windows":
        return _probe_windows(host)
    soc = _soc_details(root)
    dev = under(root, "/dev")
    nodes = sorted(
        p.name for pattern in ("fastrpc-cdsp*", "adsprpc-smd*") for p in dev.glob(pattern)
    )
    if nodes:
        return Finding("qualcomm_npu", True, {**soc, "fastrpc": nodes, "source": "fastrpc"})
    if _is_qualcomm(str(soc.get("family", "")) + " " + str(soc.get("machine", ""))):
        return Finding(
            "qualcomm_npu",
            False,
            {**soc, "driver_loaded": False},
            f"driver not loaded: {soc.get('family')} SoC {soc.get('machine', '')} has no "
            "/dev/fastrpc-cdsp* or /dev/adsprpc-smd node (the FastRPC driver that "
            "reaches the Hexagon NPU)",
        )
    return Finding(
        "qualcomm_npu",
        False,
        soc,
        "no /dev/fastrpc-cdsp* or /dev/adsprpc-smd node and /sys/devices/soc0/family "
        "is not Snapdragon",
    )


def _probe_windows(host: HostInfo) -> Finding:
    arm = host.machine.upper() in ("ARM64", "AARCH64")
    details: dict[str, Detail] = {
        "machine": host.machine,
        "processor": host.processor,
        "source": "windows-host",
    }
    if arm and _is_qualcomm(host.processor):
        return Finding("qualcomm_npu", True, details)
    if not arm:
        return Finding(
            "qualcomm_npu", False, details, f"not Windows on Arm (machine is {host.machine})"
        )
    return Finding(
        "qualcomm_npu",
        False,
        details,
        f"Windows on Arm, but the processor {host.processor!r} is not a Qualcomm Snapdragon",
    )


def _soc_details(root: Path) -> dict[str, Detail]:
    """family, machine and soc_id from /sys/devices/soc0, where the kernel has them."""
    soc0 = under(root, "/sys/devices/soc0")
    details: dict[str, Detail] = {}
    for name in ("family", "machine", "soc_id"):
        value = read_text(soc0 / name)
        if value:
            details[name] = value
    return details


def _is_qualcomm(text: str) -> bool:
    return any(name in text.lower() for name in QUALCOMM_NAMES)
