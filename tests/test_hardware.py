"""Hardware probes against fake sysfs/procfs trees (tests/fakehw.py) and on this machine."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.hardware import (
    BUILTIN_PROBES,
    Finding,
    HardwareReport,
    HostInfo,
    amd_npu_from_windows_ids,
    intel_npu_from_windows_ids,
    parse_windows_hwids,
    probe_amd_npu,
    probe_apple,
    probe_cpu,
    probe_intel_npu,
    probe_nvidia,
    probe_qualcomm_npu,
    run_probes,
)
from runtime.hardware.host import is_real_root
from tests import fakehw

# --- cpu --------------------------------------------------------------------------------


def test_cpu_reads_vendor_model_cores_and_flags(tmp_path: Path) -> None:
    finding = probe_cpu(fakehw.nvidia_server(tmp_path))
    assert finding.present and finding.reason == ""
    assert finding.details["vendor"] == "GenuineIntel"
    assert finding.details["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert finding.details["logical_cores"] == 32
    assert {
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_bf16",
        "amx_int8",
        "amx_tile",
    } <= set(finding.details["flags"])
    assert "sse2" not in finding.details["flags"]  # only the flags that matter are kept


def test_cpu_on_arm_reports_neon(tmp_path: Path) -> None:
    details = probe_cpu(fakehw.snapdragon_linux(tmp_path)).details
    assert details["vendor"] == "Qualcomm"
    assert {"neon", "asimd", "bf16", "i8mm"} <= set(details["flags"])
    assert details["logical_cores"] == 8


def test_cpu_on_macos_asks_sysctl(tmp_path: Path) -> None:
    details = probe_cpu(fakehw.apple_m3(tmp_path)).details
    assert details["model"] == "Apple M3" and details["vendor"] == "Apple"
    assert details["logical_cores"] == 8
    assert {"neon", "bf16", "i8mm"} <= set(details["flags"])


def test_cpu_without_cpuinfo_is_present_and_says_why_flags_are_missing(tmp_path: Path) -> None:
    fakehw.host(
        tmp_path, system="Windows", machine="AMD64", processor="AMD64 Family 26", cpu_count=12
    )
    finding = probe_cpu(tmp_path)
    assert finding.present
    assert finding.details["logical_cores"] == 12 and finding.details["flags"] == []
    assert "/proc/cpuinfo" in finding.details["flags_reason"]


# --- apple ------------------------------------------------------------------------------


def test_apple_m3(tmp_path: Path) -> None:
    finding = probe_apple(fakehw.apple_m3(tmp_path))
    assert finding.present
    assert finding.details["chip"] == "Apple M3"
    assert finding.details["memory_gb"] == 24
    assert finding.details["rosetta"] is False
    assert "metal" not in finding.details  # MLX's own probe says that (backends.mlx.probe)


def test_apple_under_rosetta(tmp_path: Path) -> None:
    finding = probe_apple(fakehw.apple_m3(tmp_path, rosetta=True))
    assert finding.present and finding.details["rosetta"] is True
    assert "Rosetta" in finding.details["rosetta_reason"]


def test_apple_absent_on_linux_and_on_intel_macs(tmp_path: Path) -> None:
    assert "not macOS" in probe_apple(fakehw.plain_linux(tmp_path / "linux")).reason
    intel_mac = tmp_path / "intel-mac"
    fakehw.host(intel_mac, system="Darwin", machine="x86_64")
    fakehw.sysctl(intel_mac, machdep__cpu__brand_string="Intel(R) Core(TM) i7-8559U")
    finding = probe_apple(intel_mac)
    assert not finding.present and "Intel Mac" in finding.reason


# --- amd_npu ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "generation", "chip", "vbnv"),
    [
        (fakehw.strix_laptop, "xdna2", "Strix Point", "RyzenAI-npu4"),
        (fakehw.strix_halo_laptop, "xdna2", "Strix Halo", "RyzenAI-npu5"),
        (fakehw.krackan_laptop, "xdna2", "Krackan Point", "RyzenAI-npu6"),
        (fakehw.phoenix_laptop, "xdna", "Phoenix / Hawk Point", "RyzenAI-npu1"),
    ],
)
def test_amd_npu_generations(tmp_path: Path, build, generation: str, chip: str, vbnv: str) -> None:
    finding = probe_amd_npu(build(tmp_path))
    assert finding.present, finding.reason
    assert finding.details["generation"] == generation
    assert finding.details["chip"] == chip
    assert finding.details["vbnv"] == vbnv
    assert finding.details["driver"] == "amdxdna" and finding.details["driver_loaded"] is True
    assert finding.details["address"] == "0000:c4:00.1"


def test_amd_npu_without_driver_is_reported_as_driver_not_loaded(tmp_path: Path) -> None:
    finding = probe_amd_npu(fakehw.strix_laptop(tmp_path, driver=False))
    assert not finding.present
    assert "driver not loaded" in finding.reason and "amdxdna" in finding.reason
    assert finding.details["generation"] == "xdna2" and finding.details["driver_loaded"] is False


def test_amd_npu_driver_given_as_a_directory(tmp_path: Path) -> None:
    fakehw.host(tmp_path)
    fakehw.write(tmp_path, "/opt/xilinx/xrt/lib/libxrt_driver_xdna.so.2", "")
    npu = fakehw.pci_device(
        tmp_path, "0000:c4:00.1", 0x1022, 0x17F0, 0x20, driver="amdxdna", driver_as_dir=True
    )
    fakehw.accel(tmp_path, 0, npu)
    finding = probe_amd_npu(tmp_path)
    assert finding.present and finding.details["chip"] == "Krackan Point"


def test_amd_npu_absent_says_what_was_checked(tmp_path: Path) -> None:
    finding = probe_amd_npu(fakehw.plain_linux(tmp_path))
    assert not finding.present and finding.details == {}
    assert "/sys/class/accel/accel*/device/driver bound to amdxdna" in finding.reason
    assert "1022:17f0" in finding.reason


def test_amd_npu_ignores_an_accelerator_of_another_vendor(tmp_path: Path) -> None:
    finding = probe_amd_npu(fakehw.lunar_lake_laptop(tmp_path))
    assert not finding.present and "amdxdna" in finding.reason


@pytest.mark.parametrize(
    ("hwid", "generation", "chip"),
    [
        ("PCI\\VEN_1022&DEV_17F0&REV_10", "xdna2", "Strix Point"),
        ("PCI\\VEN_1022&DEV_17F0&REV_11", "xdna2", "Strix Halo"),
        ("pci\\ven_1022&dev_17f0&rev_20", "xdna2", "Krackan Point"),
        ("PCI\\VEN_1022&DEV_17F0&SUBSYS_0C1E1028&REV_10", "xdna2", "Strix Point"),
        ("PCI\\VEN_1022&DEV_1502&REV_00", "xdna", "Phoenix / Hawk Point"),
    ],
)
def test_amd_npu_from_windows_hardware_ids(hwid: str, generation: str, chip: str) -> None:
    finding = amd_npu_from_windows_ids(hwid)
    assert finding.present and finding.name == "amd_npu"
    assert (finding.details["generation"], finding.details["chip"]) == (generation, chip)


def test_windows_hardware_ids_from_a_pnputil_listing() -> None:
    listing = (
        "Instance ID:    PCI\\VEN_1022&DEV_17F0&SUBSYS_0C1E1028&REV_10\\4&2c6d0ba8&0&0141\n"
        "Hardware IDs:   PCI\\VEN_1022&DEV_17F0&SUBSYS_0C1E1028&REV_10\n"
        "                PCI\\VEN_1022&DEV_17F0&SUBSYS_0C1E1028\n"
        "                PCI\\VEN_1022&DEV_17F0&REV_10\n"
        "                PCI\\VEN_1022&DEV_17F0\n"
        "Instance ID:    PCI\\VEN_8086&DEV_7D1D&SUBSYS_0CB21028&REV_04\\3&11583659&0&58\n"
    )
    devices = parse_windows_hwids(listing)
    assert [(d.vendor, d.device, d.revision) for d in devices] == [
        (0x1022, 0x17F0, 0x10),
        (0x8086, 0x7D1D, 0x04),
    ]
    assert amd_npu_from_windows_ids(listing).details["chip"] == "Strix Point"
    assert intel_npu_from_windows_ids(listing).details["chip"] == "Meteor Lake"
    absent = amd_npu_from_windows_ids("PCI\\VEN_10DE&DEV_2684&REV_A1")
    assert not absent.present and "1022:17f0" in absent.reason


def test_amd_npu_on_windows_runs_pnputil(tmp_path: Path) -> None:
    fakehw.host(tmp_path, system="Windows", machine="AMD64")
    fakehw.command(tmp_path, "pnputil", "Hardware IDs:   PCI\\VEN_1022&DEV_17F0&REV_20\n")
    finding = probe_amd_npu(tmp_path)
    assert finding.present and finding.details["chip"] == "Krackan Point"
    assert finding.details["source"] == "pnputil"


def test_amd_npu_on_windows_without_pnputil_says_so(tmp_path: Path) -> None:
    fakehw.host(tmp_path, system="Windows", machine="AMD64")
    finding = probe_amd_npu(tmp_path)
    assert not finding.present and "pnputil" in finding.reason


# --- intel_npu --------------------------------------------------------------------------


def test_intel_npu_lunar_lake(tmp_path: Path) -> None:
    finding = probe_intel_npu(fakehw.lunar_lake_laptop(tmp_path))
    assert finding.present
    assert finding.details["chip"] == "Lunar Lake" and finding.details["generation"] == "npu4"
    assert finding.details["driver"] == "intel_vpu"


def test_intel_npu_absent(tmp_path: Path) -> None:
    finding = probe_intel_npu(fakehw.strix_laptop(tmp_path))
    assert not finding.present and "intel_vpu" in finding.reason and "8086:643e" in finding.reason


# --- qualcomm_npu -----------------------------------------------------------------------


def test_qualcomm_npu_on_linux_via_fastrpc(tmp_path: Path) -> None:
    finding = probe_qualcomm_npu(fakehw.snapdragon_linux(tmp_path))
    assert finding.present
    assert finding.details["fastrpc"] == ["fastrpc-cdsp"]
    assert finding.details["machine"] == "SM8650" and finding.details["family"] == "Snapdragon"


def test_qualcomm_soc_without_fastrpc_is_driver_not_loaded(tmp_path: Path) -> None:
    finding = probe_qualcomm_npu(fakehw.snapdragon_linux(tmp_path, fastrpc=False))
    assert not finding.present and "driver not loaded" in finding.reason


def test_qualcomm_npu_on_windows_on_arm(tmp_path: Path) -> None:
    finding = probe_qualcomm_npu(fakehw.snapdragon_windows(tmp_path))
    assert finding.present and finding.details["source"] == "windows-host"


def test_qualcomm_npu_absent(tmp_path: Path) -> None:
    assert "fastrpc-cdsp" in probe_qualcomm_npu(fakehw.plain_linux(tmp_path / "a")).reason
    fakehw.host(tmp_path / "b", system="Windows", machine="AMD64", processor="Intel64 Family 6")
    assert "not Windows on Arm" in probe_qualcomm_npu(tmp_path / "b").reason


# --- nvidia -----------------------------------------------------------------------------


def test_nvidia_from_procfs(tmp_path: Path) -> None:
    finding = probe_nvidia(fakehw.nvidia_server(tmp_path))
    assert finding.present
    assert (
        finding.details["gpus"] == ["NVIDIA H100 80GB HBM3"] * 2
        and finding.details["gpu_count"] == 2
    )
    assert finding.details["driver_version"] == "550.54.15"
    assert finding.details["source"] == "procfs"


def test_nvidia_from_nvidia_smi(tmp_path: Path) -> None:
    finding = probe_nvidia(fakehw.nvidia_server(tmp_path, procfs=False))
    assert finding.present and finding.details["source"] == "nvidia-smi"
    assert finding.details["memory_mib"] == [81559, 81559]


def test_nvidia_smi_timeout_becomes_the_reason(tmp_path: Path) -> None:
    def hang(argv):
        raise subprocess.TimeoutExpired(argv, 3.0)

    host = HostInfo("Linux", "x86_64", run=hang, which=lambda name: f"/usr/bin/{name}")
    finding = probe_nvidia(tmp_path, host=host)
    assert not finding.present and "did not answer within 3 s" in finding.reason


def test_nvidia_absent(tmp_path: Path) -> None:
    finding = probe_nvidia(fakehw.plain_linux(tmp_path))
    assert not finding.present
    assert "/proc/driver/nvidia" in finding.reason and "nvidia-smi" in finding.reason


# --- run_probes -------------------------------------------------------------------------


def test_run_probes_captures_a_failing_probe_and_logs_it(tmp_path: Path, caplog) -> None:
    def probe_broken(root: Path) -> Finding:
        raise RuntimeError("sysfs exploded")

    with caplog.at_level(logging.WARNING, logger="runtime.hardware"):
        report = run_probes(tmp_path, [probe_cpu, probe_broken])
    assert report.names() == ["cpu", "broken"]
    broken = report.get("broken")
    assert broken is not None and not broken.present
    assert broken.reason == "probe failed: RuntimeError: sysfs exploded"
    assert "broken" in caplog.text and "sysfs exploded" in caplog.text


def test_report_to_dict_and_get(tmp_path: Path) -> None:
    report = run_probes(fakehw.strix_laptop(tmp_path))
    assert report.names() == list(BUILTIN_PROBES)
    data = report.to_dict()
    assert (
        data["amd_npu"]["details"]["generation"] == "xdna2" and data["amd_npu"]["present"] is True
    )
    assert report.get("no_such_probe") is None
    assert isinstance(report, HardwareReport)


def test_fake_roots_never_touch_the_real_host(tmp_path: Path) -> None:
    assert is_real_root(Path("/")) and not is_real_root(tmp_path)
    host = HostInfo.detect(tmp_path)
    assert (host.system, host.machine) == ("Linux", "x86_64")
    with pytest.raises(FileNotFoundError):
        host.run(["uname", "-a"])
    assert host.which("nvidia-smi") is None


def test_importing_the_probes_imports_nothing_heavy() -> None:
    code = (
        "import sys, runtime.hardware; "
        "print(sorted({'onnxruntime', 'mlx', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]"


def test_run_probes_on_this_machine() -> None:
    report = run_probes()
    assert report.names() == list(BUILTIN_PROBES)
    cpu = report.get("cpu")
    assert cpu is not None and cpu.present and cpu.details["logical_cores"] >= 1
    for finding in report.findings.values():
        assert finding.present or finding.reason, f"{finding.name} found nothing and said not why"
        assert not finding.reason.startswith("probe failed"), finding.reason


# --- what makes a bound NPU usable (Linux) --------------------------------------------------


@pytest.mark.parametrize(
    ("device", "generation", "chip"),
    [(0xFD3E, "npu5", "Wildcat Lake"), (0xD71D, "npu6", "Nova Lake")],
)
def test_intel_npu_newer_chips(tmp_path: Path, device: int, generation: str, chip: str) -> None:
    fakehw.lunar_lake_laptop(tmp_path / "a")
    fakehw.host(tmp_path / "b")
    npu = fakehw.pci_device(
        tmp_path / "b", "0000:00:0b.0", 0x8086, device, 0x00, driver="intel_vpu"
    )
    fakehw.accel(tmp_path / "b", 0, npu)
    fakehw.write(tmp_path / "b", "/usr/lib64/libze_intel_npu.so.1", "")
    fakehw.write(tmp_path / "b", "/usr/lib64/libnpu_driver_compiler.so", "")
    finding = probe_intel_npu(tmp_path / "b")
    assert finding.present, finding.reason
    assert (finding.details["generation"], finding.details["chip"]) == (generation, chip)


def test_intel_npu_without_its_user_mode_driver_is_not_usable(tmp_path: Path) -> None:
    finding = probe_intel_npu(fakehw.lunar_lake_laptop(tmp_path, user_mode=False))
    assert not finding.present and finding.details["usable"] is False
    assert (
        "bound to intel_vpu, but Intel NPU user-mode driver (intel-level-zero-npu) and "
        "Intel NPU compiler (intel-driver-compiler-npu) not installed" in finding.reason
    )


def test_user_mode_driver_found_through_ldconfig(tmp_path: Path) -> None:
    fakehw.lunar_lake_laptop(tmp_path, user_mode=False)
    fakehw.command(
        tmp_path,
        "ldconfig",
        "\tlibze_intel_npu.so.1 (libc6,x86-64) => /opt/x/libze_intel_npu.so.1\n"
        "\tlibnpu_driver_compiler.so (libc6,x86-64) => /opt/x/libnpu_driver_compiler.so\n",
    )
    assert probe_intel_npu(tmp_path).present


def test_npu_node_this_user_cannot_open(tmp_path: Path, monkeypatch) -> None:
    import os

    fakehw.lunar_lake_laptop(tmp_path)
    node = str(tmp_path / "dev/accel/accel0")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == node else real(p, mode))
    finding = probe_intel_npu(tmp_path)
    assert not finding.present and "cannot open /dev/accel/accel0" in finding.reason
    assert "usermod -aG render" in finding.reason


def test_amd_chip_name_from_the_firmware(tmp_path: Path) -> None:
    """amdxdna names the chip from its firmware: Krackan and Gorgon Point share 17f0 rev 10."""
    fakehw.host(tmp_path)
    fakehw.write(tmp_path, "/opt/xilinx/xrt/lib/libxrt_driver_xdna.so.2", "")
    npu = fakehw.pci_device(
        tmp_path,
        "0000:c4:00.1",
        0x1022,
        0x17F0,
        0x10,
        driver="amdxdna",
        vbnv="NPU Krackan 1",
        fw_version="1.1.0.21",
    )
    fakehw.accel(tmp_path, 0, npu)
    finding = probe_amd_npu(tmp_path)
    assert finding.present and finding.details["chip"] == "Krackan 1"
    assert finding.details["generation"] == "xdna2" and finding.details["fw_version"] == "1.1.0.21"


def test_amd_npu_without_xrt_is_not_usable(tmp_path: Path) -> None:
    fakehw.strix_laptop(tmp_path)
    (tmp_path / "opt/xilinx/xrt/lib/libxrt_driver_xdna.so.2").unlink()
    finding = probe_amd_npu(tmp_path)
    assert not finding.present and "XRT with its amdxdna plugin" in finding.reason


def test_qualcomm_npu_on_android(tmp_path: Path) -> None:
    fakehw.snapdragon_linux(tmp_path, fastrpc=False)
    fakehw.write(tmp_path, "/dev/adsprpc-smd", "")
    finding = probe_qualcomm_npu(tmp_path)
    assert finding.present and finding.details["fastrpc"] == ["adsprpc-smd"]
