"""The NVIDIA probe: GPUs the NVIDIA driver knows, without importing any CUDA library.

Cheapest first: /proc/driver/nvidia/gpus/*/information (one file per GPU, "Model:" line)
and /proc/driver/nvidia/version (the driver version), which the Linux kernel module writes.
Where those are missing (Windows, WSL), `nvidia-smi --query-gpu=name,memory.total
--format=csv,noheader` if it is on PATH, with a 3 s timeout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo
from runtime.hardware.sysfs import read_text, under

NVIDIA_SMI = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
_DRIVER_VERSION = re.compile(r"Kernel Module(?: for \S+)?\s+([0-9][0-9.]*)")


def probe_nvidia(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """NVIDIA GPUs by name (and memory where nvidia-smi tells it), with the driver version."""
    host = host or HostInfo.detect(root)
    proc = under(root, "/proc/driver/nvidia")
    version_text = read_text(proc / "version")
    details: dict[str, Detail] = {}
    if version_text:
        match = _DRIVER_VERSION.search(version_text)
        details["driver_version"] = match.group(1) if match else version_text.splitlines()[0]
    gpus = _proc_gpus(proc)
    if gpus:
        return Finding(
            "nvidia", True, {**details, "gpus": gpus, "gpu_count": len(gpus), "source": "procfs"}
        )
    smi = _nvidia_smi(host)
    if isinstance(smi, dict):
        return Finding("nvidia", True, {**details, **smi, "source": "nvidia-smi"})
    if version_text:  # the driver is loaded, so there is a GPU; we just cannot name it
        details.update(gpus=[], gpu_count=0, gpus_reason=smi, source="procfs")
        return Finding("nvidia", True, details)
    return Finding("nvidia", False, {}, f"no /proc/driver/nvidia (driver not loaded) and {smi}")


def _proc_gpus(proc: Path) -> list[str]:
    """GPU model names from /proc/driver/nvidia/gpus/<bus id>/information."""
    gpus_dir = proc / "gpus"
    if not gpus_dir.is_dir():
        return []
    names = []
    for info in sorted(gpus_dir.glob("*/information")):
        for line in (read_text(info) or "").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model":
                names.append(value.strip())
                break
    return names


def _nvidia_smi(host: HostInfo) -> dict[str, Detail] | str:
    """gpus, memory_mib and gpu_count from nvidia-smi, or the reason it gave none."""
    if host.which("nvidia-smi") is None:
        return "no nvidia-smi on PATH"
    try:
        output = host.run(NVIDIA_SMI)
    except subprocess.TimeoutExpired:
        return "nvidia-smi did not answer within 3 s"
    except subprocess.CalledProcessError as exc:
        output = (exc.stderr or exc.stdout or "").strip()[:200]
        return f"nvidia-smi failed (exit {exc.returncode}): {output}"
    except OSError as exc:
        return f"nvidia-smi could not run: {exc}"
    names: list[str] = []
    memory: list[int] = []
    for line in output.splitlines():
        name, _, mem = line.partition(",")
        if not name.strip():
            continue
        names.append(name.strip())
        digits = re.match(r"\s*(\d+)", mem)
        memory.append(int(digits.group(1)) if digits else 0)
    if not names:
        return "nvidia-smi lists no GPU"
    return {"gpus": names, "memory_mib": memory, "gpu_count": len(names)}
