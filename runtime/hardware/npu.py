"""Probes for PCI NPUs with a Linux accel driver: AMD XDNA (amdxdna) and Intel NPU (intel_vpu).

Linux: the cheapest sign of a usable NPU is `/sys/class/accel/accel*/device/driver` bound to
the vendor's driver, a `/dev/accel/accel*` node this user may read and write (the `render`
group), and the vendor's user-mode driver (Intel's Level Zero NPU driver and compiler; AMD's
XRT with its amdxdna plugin). We also scan `/sys/bus/pci/devices/*` so an NPU whose driver is
not loaded is reported as such instead of as missing. Windows: `pnputil /enum-devices /bus PCI
/deviceids` lists hardware ids such as `PCI\\VEN_1022&DEV_17F0&REV_10`, parsed by a pure
function (the method AMD's Ryzen AI quicktest uses).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo
from runtime.hardware.sysfs import (
    PciDevice,
    accel_devices,
    driver_name,
    parse_windows_hwids,
    pci_devices,
    read_pci_device,
    read_text,
    under,
)

PNPUTIL = ["pnputil", "/enum-devices", "/bus", "PCI", "/deviceids"]

# AMD NPUs (Ryzen AI "APU types", from AMD's Ryzen AI application-development guide).
AMD_VENDOR = 0x1022
AMD_XDNA_PHOENIX = 0x1502  # XDNA: Phoenix / Hawk Point (Ryzen 7040 / 8040)
AMD_XDNA2 = 0x17F0  # XDNA2: the revision tells the chip
AMD_XDNA2_CHIPS = {
    0x00: "Strix Point",  # AMD's table lists rev 0x00 as STX as well
    0x10: "Strix Point",
    0x11: "Strix Halo",
    0x20: "Krackan Point",
}

# Intel NPUs bound to intel_vpu (PCI ids from the Linux driver, drivers/accel/ivpu/ivpu_drv.h).
INTEL_VENDOR = 0x8086
INTEL_NPUS = {
    0x7D1D: ("npu3", "Meteor Lake"),
    0xAD1D: ("npu3", "Arrow Lake"),
    0x643E: ("npu4", "Lunar Lake"),
    0xB03E: ("npu5", "Panther Lake"),
    0xFD3E: ("npu5", "Wildcat Lake"),
    0xD71D: ("npu6", "Nova Lake"),
}
# What userspace needs besides the kernel driver (Linux): a file matching one of the patterns.
INTEL_USER_MODE = (
    ("Intel NPU user-mode driver (intel-level-zero-npu)", "libze_intel_npu.so*"),
    ("Intel NPU compiler (intel-driver-compiler-npu)", "libnpu_driver_compiler.so*"),
)
AMD_USER_MODE = (
    (
        "XRT with its amdxdna plugin (Ryzen AI's xrt and xrt_plugin packages)",
        "libxrt_driver_xdna.so*",
    ),
)
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/xilinx/xrt/lib",
)


def classify_amd(pci: PciDevice, vbnv: str | None = None) -> dict[str, Detail]:
    """generation ("xdna"/"xdna2") and chip name of an AMD NPU from its PCI ids; recent amdxdna
    names the chip from its firmware in ``vbnv`` ("NPU Krackan 1", "NPU Gorgon Point 2"),
    which tells apart chips that share 17f0 rev 10."""
    if vbnv and vbnv.startswith("NPU "):
        generation = "xdna" if pci.device == AMD_XDNA_PHOENIX else "xdna2"
        return {"generation": generation, "chip": vbnv.removeprefix("NPU ")}
    if pci.device == AMD_XDNA_PHOENIX:
        return {"generation": "xdna", "chip": "Phoenix / Hawk Point"}
    if pci.device == AMD_XDNA2:
        rev = pci.revision
        chip = (
            "Strix family"
            if rev is None
            else AMD_XDNA2_CHIPS.get(rev, f"unknown XDNA2 chip (revision 0x{rev:02x})")
        )
        return {"generation": "xdna2", "chip": chip}
    return {"generation": "unknown", "chip": f"unknown AMD NPU ({pci.ids})"}


def classify_intel(pci: PciDevice, vbnv: str | None = None) -> dict[str, Detail]:
    """generation ("npu3"/"npu4"/"npu5") and chip name of an Intel NPU from its PCI ids."""
    generation, chip = INTEL_NPUS.get(pci.device, ("unknown", f"unknown Intel NPU ({pci.ids})"))
    return {"generation": generation, "chip": chip}


@dataclass(frozen=True)
class NpuSpec:
    """What identifies one vendor's NPU."""

    probe: str  # the probe's name, e.g. "amd_npu"
    label: str  # "AMD NPU", used in reasons
    driver: str  # the Linux accel driver, e.g. "amdxdna"
    vendor: int
    devices: frozenset[int]
    classify: Callable[..., dict[str, Detail]]  # (PciDevice, vbnv) -> generation, chip
    sysfs_files: tuple[str, ...] = ()  # extra device attributes to report, e.g. "vbnv"
    user_mode: tuple[tuple[str, str], ...] = ()  # (what, library file pattern) needed on Linux

    @property
    def pci_list(self) -> str:
        return " or ".join(f"{self.vendor:04x}:{d:04x}" for d in sorted(self.devices))


AMD_NPU = NpuSpec(
    "amd_npu",
    "AMD NPU",
    "amdxdna",
    AMD_VENDOR,
    frozenset({AMD_XDNA_PHOENIX, AMD_XDNA2}),
    classify_amd,
    ("vbnv", "fw_version"),
    AMD_USER_MODE,
)
INTEL_NPU = NpuSpec(
    "intel_npu",
    "Intel NPU",
    "intel_vpu",
    INTEL_VENDOR,
    frozenset(INTEL_NPUS),
    classify_intel,
    (),
    INTEL_USER_MODE,
)


def probe_amd_npu(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """An AMD Ryzen AI NPU: XDNA (Phoenix, Hawk Point) or XDNA2 (Strix, Strix Halo, Krackan)."""
    return probe_pci_npu(AMD_NPU, root, host)


def probe_intel_npu(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """An Intel NPU: Meteor Lake, Arrow Lake, Lunar Lake, Panther Lake, Wildcat or Nova Lake."""
    return probe_pci_npu(INTEL_NPU, root, host)


def probe_pci_npu(spec: NpuSpec, root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """Find `spec`'s NPU: bound to its driver (usable), present but unbound, or absent."""
    host = host or HostInfo.detect(root)
    if host.system == "Windows":
        return _probe_windows(spec, host)
    if host.system != "Linux":
        return Finding(
            spec.probe, False, {}, f"not Linux or Windows (platform.system() is {host.system!r})"
        )
    for node, device_dir in accel_devices(root):
        if driver_name(device_dir) == spec.driver:
            return _usable(spec, _bound_finding(spec, device_dir), root, host, node)
    unbound = pci_devices(root, spec.vendor, set(spec.devices))
    if unbound:
        pci = unbound[0]
        details = {
            **spec.classify(pci),
            **_pci_details(pci),
            "driver_loaded": False,
            "source": "sysfs",
        }
        bound_to = f"bound to {pci.driver}" if pci.driver else "not bound to any driver"
        reason = (
            f"driver not loaded: {spec.label} {details['chip']} ({pci.ids}) at {pci.address} is "
            f"{bound_to}; load the {spec.driver} kernel driver"
        )
        return Finding(spec.probe, False, details, reason)
    reason = (
        f"no /sys/class/accel/accel*/device/driver bound to {spec.driver}, and no {spec.label} "
        f"(PCI {spec.pci_list}) in /sys/bus/pci/devices"
    )
    return Finding(spec.probe, False, {}, reason)


def _bound_finding(spec: NpuSpec, device_dir: Path) -> Finding:
    pci = read_pci_device(device_dir)
    attributes = {
        name: value for name in spec.sysfs_files if (value := read_text(device_dir / name))
    }
    if pci is None:  # bound but without readable ids: still usable, just unnamed
        details: dict[str, Detail] = {
            "generation": "unknown",
            "chip": f"unknown {spec.label}",
            "driver": spec.driver,
        }
    else:
        details = {**spec.classify(pci, attributes.get("vbnv")), **_pci_details(pci)}
    details.update(driver_loaded=True, source="sysfs", **attributes)
    return Finding(spec.probe, True, details)


def _usable(spec: NpuSpec, finding: Finding, root: Path, host: HostInfo, node: str) -> Finding:
    """A bound NPU is usable when this user may open its /dev/accel node and the vendor's
    user-mode driver is installed; otherwise the finding says which is missing and the fix."""
    details = dict(finding.details)
    device = under(root, f"/dev/accel/{node}")
    details["device_node"] = f"/dev/accel/{node}"
    problems = []
    if device.exists() and not os.access(device, os.R_OK | os.W_OK):
        problems.append(
            f"this user cannot open /dev/accel/{node} (add it to the group that owns "
            "the node, usually render: sudo usermod -aG render $USER, then log in again)"
        )
    missing = [what for what, pattern in spec.user_mode if not _library_found(root, host, pattern)]
    if missing:
        problems.append(f"{' and '.join(missing)} not installed")
    if not problems:
        return Finding(spec.probe, True, details)
    details["usable"] = False
    reason = f"{spec.label} {details.get('chip', '')} is bound to {spec.driver}, but " + "; ".join(
        problems
    )
    return Finding(spec.probe, False, details, reason)


def _library_found(root: Path, host: HostInfo, pattern: str) -> bool:
    """A shared library in the usual folders, or in ``ldconfig -p``'s list."""
    if any(any(under(root, d).glob(pattern)) for d in LIBRARY_DIRS):
        return True
    try:
        listing = host.run(["ldconfig", "-p"])
    except (OSError, subprocess.SubprocessError):
        return False
    stem = pattern.rstrip("*")
    return any(stem in line for line in listing.splitlines())


def _pci_details(pci: PciDevice) -> dict[str, Detail]:
    return {"pci_id": pci.ids, "address": pci.address, "driver": pci.driver or ""}


def _probe_windows(spec: NpuSpec, host: HostInfo) -> Finding:
    try:
        listing = host.run(PNPUTIL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Finding(
            spec.probe,
            False,
            {"source": "pnputil"},
            f"could not list PCI devices with pnputil: {exc}",
        )
    return finding_from_windows_ids(spec, listing)


def finding_from_windows_ids(spec: NpuSpec, text: str) -> Finding:
    """The finding for Windows hardware ids in `text` (pure: one id or a pnputil listing)."""
    for pci in parse_windows_hwids(text):
        if pci.vendor == spec.vendor and pci.device in spec.devices:
            details = {
                **spec.classify(pci),
                "pci_id": pci.ids,
                "hardware_id": pci.address,
                "source": "pnputil",
            }
            return Finding(spec.probe, True, details)
    return Finding(
        spec.probe,
        False,
        {"source": "pnputil"},
        f"no {spec.label} hardware id (PCI {spec.pci_list}) among the PCI devices pnputil lists",
    )


def amd_npu_from_windows_ids(text: str) -> Finding:
    """`PCI\\VEN_1022&DEV_17F0&REV_10` (or a pnputil listing) to the amd_npu finding."""
    return finding_from_windows_ids(AMD_NPU, text)


def intel_npu_from_windows_ids(text: str) -> Finding:
    """`PCI\\VEN_8086&DEV_643E` (or a pnputil listing) to the intel_npu finding."""
    return finding_from_windows_ids(INTEL_NPU, text)
