"""The Apple Silicon probe: macOS on an M-series chip.

Checked, cheapest first: platform.system() is Darwin; the machine is arm64, or x86_64 with
`sysctl.proc_translated` = 1 (an x86_64 Python under Rosetta 2 on Apple Silicon, where MLX
cannot run); the chip (`machdep.cpu.brand_string`) and memory (`hw.memsize`). Whether MLX sees
the Metal GPU is the MLX backend's own probe (``backends.mlx.probe``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo

GIB = 1 << 30


def probe_apple(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """Apple Silicon with its chip name, memory and Rosetta state."""
    host = host or HostInfo.detect(root)
    if host.system != "Darwin":
        return Finding("apple", False, {}, f"not macOS (platform.system() is {host.system!r})")
    rosetta = _sysctl(host, "sysctl.proc_translated") == "1"
    if host.machine.lower() != "arm64" and not rosetta:
        return Finding(
            "apple",
            False,
            {"machine": host.machine},
            f"an Intel Mac ({host.machine}, not translated by Rosetta), not Apple Silicon",
        )
    details: dict[str, Detail] = {
        "chip": _sysctl(host, "machdep.cpu.brand_string") or "unknown Apple Silicon",
        "machine": host.machine,
        "rosetta": rosetta,
    }
    if rosetta:
        details["rosetta_reason"] = (
            "this Python is x86_64 under Rosetta 2; MLX needs an arm64 Python"
        )
    memsize = _sysctl(host, "hw.memsize")
    if memsize and memsize.isdigit():
        details["memory_bytes"] = int(memsize)
        details["memory_gb"] = round(int(memsize) / GIB)
    return Finding("apple", True, details)


def _sysctl(host: HostInfo, name: str) -> str | None:
    try:
        return host.sysctl(name)
    except (OSError, subprocess.SubprocessError):
        return None
