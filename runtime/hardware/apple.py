"""The Apple Silicon probe: macOS on an M-series chip, and whether MLX sees its Metal GPU.

Checked, cheapest first: platform.system() is Darwin; the machine is arm64, or x86_64 with
`sysctl.proc_translated` = 1 (an x86_64 Python under Rosetta 2 on Apple Silicon, where MLX
cannot run); the chip (`machdep.cpu.brand_string`) and memory (`hw.memsize`); then, last,
MLX's default device (mlx.core is imported only here).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo

GIB = 1 << 30


def probe_apple(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """Apple Silicon with its chip name, memory, Rosetta state and MLX's Metal device."""
    host = host or HostInfo.detect(root)
    if host.system != "Darwin":
        return Finding("apple", False, {}, f"not macOS (platform.system() is {host.system!r})")
    rosetta = _sysctl(host, "sysctl.proc_translated") == "1"
    if host.machine.lower() != "arm64" and not rosetta:
        return Finding("apple", False, {"machine": host.machine},
                       f"an Intel Mac ({host.machine}, not translated by Rosetta), not Apple Silicon")
    details: dict[str, Detail] = {
        "chip": _sysctl(host, "machdep.cpu.brand_string") or "unknown Apple Silicon",
        "machine": host.machine,
        "rosetta": rosetta,
    }
    if rosetta:
        details["rosetta_reason"] = "this Python is x86_64 under Rosetta 2; MLX needs an arm64 Python"
    memsize = _sysctl(host, "hw.memsize")
    if memsize and memsize.isdigit():
        details["memory_bytes"] = int(memsize)
        details["memory_gb"] = round(int(memsize) / GIB)
    details.update(_mlx_details(host))
    return Finding("apple", True, details)


def _mlx_details(host: HostInfo) -> dict[str, Detail]:
    """metal: does MLX see a Metal device; metal_reason says why not."""
    try:
        mlx = host.mlx()
    except ImportError as exc:
        return {"metal": False, "metal_reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - MLX raises RuntimeError when Metal cannot start; keep why
        return {"metal": False, "metal_reason": f"mlx failed: {type(exc).__name__}: {exc}"}
    details: dict[str, Detail] = {"metal": mlx.metal, "mlx_version": mlx.version, "mlx_device": mlx.device}
    if not mlx.metal:
        details["metal_reason"] = f"MLX {mlx.version} sees no Metal device (default device {mlx.device})"
    return details


def _sysctl(host: HostInfo, name: str) -> str | None:
    try:
        return host.sysctl(name)
    except (OSError, subprocess.SubprocessError):
        return None
