"""The CPU probe: vendor, model, logical cores and the ISA flags that matter for inference.

Linux reads /proc/cpuinfo; macOS asks sysctl; Windows has only what the OS environment
says. The CPU is always present: what varies is how much we could learn about it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo
from runtime.hardware.sysfs import read_text, under

# Flags that change which kernels a backend can use (x86 and Arm spellings from cpuinfo).
X86_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)
ARM_FLAGS = ("asimd", "asimdhp", "asimddp", "bf16", "i8mm", "sve", "sve2", "sme")

# "CPU implementer" codes in Arm /proc/cpuinfo.
ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x51: "Qualcomm",
    0x61: "Apple",
    0xC0: "Ampere",
}


def probe_cpu(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """What the CPU offers; always present (the CPU backend runs everywhere)."""
    host = host or HostInfo.detect(root)
    if host.system == "Darwin":
        return _probe_darwin(host)
    cpuinfo = read_text(under(root, "/proc/cpuinfo"))
    if cpuinfo:
        return Finding("cpu", True, {"machine": host.machine, **parse_cpuinfo(cpuinfo)})
    details: dict[str, Detail] = {
        "machine": host.machine,
        "model": host.processor or "unknown",
        "logical_cores": host.cpu_count,
        "flags": [],
        "flags_reason": "no /proc/cpuinfo to read ISA flags from",
    }
    return Finding("cpu", True, details)


def parse_cpuinfo(text: str) -> dict[str, Detail]:
    """vendor, model, logical_cores and flags of interest from /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    cores = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            cores += 1
        fields.setdefault(key, value)
    vendor = fields.get("vendor_id") or _arm_vendor(fields.get("cpu implementer", ""))
    model = (
        fields.get("model name") or fields.get("hardware") or fields.get("cpu model") or "unknown"
    )
    raw_flags = set((fields.get("flags") or fields.get("features") or "").split())
    flags = [f for f in X86_FLAGS + ARM_FLAGS if f in raw_flags]
    if "asimd" in raw_flags:
        flags.insert(0, "neon")  # Arm calls Advanced SIMD "asimd" in cpuinfo; users say NEON
    return {"vendor": vendor, "model": model, "logical_cores": max(cores, 1), "flags": flags}


def _arm_vendor(implementer: str) -> str:
    try:
        return ARM_IMPLEMENTERS.get(int(implementer, 16), f"implementer {implementer}")
    except ValueError:
        return "unknown"


def _probe_darwin(host: HostInfo) -> Finding:
    """macOS: sysctl names the chip; every arm64 Mac has NEON, FEAT_* sysctls tell the rest."""
    details: dict[str, Detail] = {
        "machine": host.machine,
        "vendor": "Apple" if _is_arm(host) else "Intel",
    }
    details["model"] = _sysctl(host, "machdep.cpu.brand_string") or "unknown"
    cores = _sysctl(host, "hw.logicalcpu")
    details["logical_cores"] = int(cores) if cores and cores.isdigit() else host.cpu_count
    flags: list[str] = []
    if _is_arm(host):
        flags = ["neon", "asimd"]
        for feature, flag in (("FEAT_BF16", "bf16"), ("FEAT_I8MM", "i8mm"), ("FEAT_SME", "sme")):
            if _sysctl(host, f"hw.optional.arm.{feature}") == "1":
                flags.append(flag)
    details["flags"] = flags
    return Finding("cpu", True, details)


def _is_arm(host: HostInfo) -> bool:
    return host.machine.lower() in ("arm64", "aarch64")


def _sysctl(host: HostInfo, name: str) -> str | None:
    try:
        return host.sysctl(name)
    except (OSError, subprocess.SubprocessError):
        return None
