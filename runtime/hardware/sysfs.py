"""Reading sysfs, procfs and Windows hardware ids under a (possibly fake) root.

Every path is joined under `root` with `under()`, never with `root / "/sys/..."` (which
would drop the root), so a test can build a whole machine in a temporary folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


def under(root: Path, path: str) -> Path:
    """`path` ("/sys/class/accel") inside `root`."""
    return root / path.lstrip("/")


def read_text(path: Path) -> str | None:
    """A small sysfs/procfs file, stripped; None when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def read_hex(path: Path) -> int | None:
    """A sysfs id file such as `vendor` ("0x1022"); None when missing or malformed."""
    text = read_text(path)
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def driver_name(device_dir: Path) -> str | None:
    """The driver bound to a device, or None when no driver is bound.

    Real sysfs has `device/driver` as a symlink to `/sys/bus/pci/drivers/<name>`. Fake trees
    may use a symlink or a plain directory; for a directory we look at its `module` link or
    a `name` file, and at last the device's `uevent` (DRIVER=...) line.
    """
    link = device_dir / "driver"
    if link.is_symlink():
        return os.path.basename(os.readlink(link).rstrip("/"))
    if link.is_dir():
        if link.resolve().name != "driver":
            return link.resolve().name
        module = link / "module"
        if module.is_symlink():
            return os.path.basename(os.readlink(module).rstrip("/"))
        name = read_text(link / "name")
        if name:
            return name
    uevent = read_text(device_dir / "uevent") or ""
    for line in uevent.splitlines():
        if line.startswith("DRIVER="):
            return line.split("=", 1)[1].strip() or None
    return None


@dataclass(frozen=True)
class PciDevice:
    """One PCI function: its ids and the driver bound to it (None when unbound)."""

    address: str  # "0000:c4:00.1" on Linux, the hardware id on Windows
    vendor: int
    device: int
    revision: int | None
    driver: str | None = None

    @property
    def ids(self) -> str:
        """ "1022:17f0 rev 0x10", the form shown to users."""
        rev = f" rev 0x{self.revision:02x}" if self.revision is not None else ""
        return f"{self.vendor:04x}:{self.device:04x}{rev}"


def read_pci_device(device_dir: Path, address: str | None = None) -> PciDevice | None:
    """The ids of the PCI device in `device_dir`, or None when it has no readable ids."""
    vendor = read_hex(device_dir / "vendor")
    device = read_hex(device_dir / "device")
    if vendor is None or device is None:
        return None
    name = address or device_dir.resolve().name
    return PciDevice(
        name, vendor, device, read_hex(device_dir / "revision"), driver_name(device_dir)
    )


def pci_devices(root: Path, vendor: int, devices: set[int]) -> list[PciDevice]:
    """PCI devices of `vendor` whose device id is in `devices`, bound to a driver or not."""
    base = under(root, "/sys/bus/pci/devices")
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(base.iterdir()):
        pci = read_pci_device(entry, entry.name)
        if pci and pci.vendor == vendor and pci.device in devices:
            found.append(pci)
    return found


def accel_devices(root: Path) -> list[tuple[str, Path]]:
    """(name, device folder) of each /sys/class/accel/accel* compute accelerator."""
    base = under(root, "/sys/class/accel")
    if not base.is_dir():
        return []
    return [(e.name, e / "device") for e in sorted(base.glob("accel*")) if (e / "device").exists()]


# Windows hardware ids, e.g. "PCI\VEN_1022&DEV_17F0&SUBSYS_...&REV_10" (as `pnputil` lists them).
_HWID = re.compile(
    r"PCI\\VEN_(?P<ven>[0-9A-F]{4})&DEV_(?P<dev>[0-9A-F]{4})(?:&SUBSYS_[0-9A-F]{8})?(?:&REV_(?P<rev>[0-9A-F]{2}))?",
    re.IGNORECASE,
)


def parse_windows_hwids(text: str) -> list[PciDevice]:
    """Every PCI hardware id in `text` (one id or a whole `pnputil` listing), deduplicated."""
    found: dict[tuple[int, int, int | None], PciDevice] = {}
    for match in _HWID.finditer(text):
        rev = int(match["rev"], 16) if match["rev"] else None
        key = (int(match["ven"], 16), int(match["dev"], 16), rev)
        found.setdefault(key, PciDevice(match.group(0), key[0], key[1], rev, None))
    # A device lists ids with and without REV_; keep the revised one when both are there.
    return [
        d
        for d in found.values()
        if d.revision is not None
        or not any(k[:2] == (d.vendor, d.device) and k[2] is not None for k in found)
    ]
