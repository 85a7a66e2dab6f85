"""Fake machines for hardware-probe tests: sysfs, procfs, /dev and host facts in a folder.

Each builder writes one kind of machine under `root` (a pytest tmp_path) and returns root.
Layouts follow the real kernel's: PCI devices live under /sys/devices/... with
/sys/bus/pci/devices/<address> symlinks, `driver` is a symlink to /sys/bus/pci/drivers/<name>,
and /sys/class/accel/accel0/device points at the PCI device. Host facts (OS, sysctl, commands,
installed libraries) go under root/fake/, as runtime.hardware.host documents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

X86_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2"
ZEN5_FLAGS = X86_FLAGS + " avx512f avx512bw avx512_vnni avx512_bf16 avx_vnni"
SAPPHIRE_RAPIDS_FLAGS = (
    X86_FLAGS + " avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"
)
ARM_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp i8mm bf16"


def write(root: Path, path: str, text: str) -> Path:
    """Write `text` to `path` ("/proc/cpuinfo") inside root, creating folders."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def host(
    root: Path,
    system: str = "Linux",
    machine: str = "x86_64",
    processor: str = "",
    cpu_count: int | None = None,
) -> None:
    """Platform facts: platform.system(), platform.machine(), the Windows processor name."""
    write(root, "/fake/system", system)
    write(root, "/fake/machine", machine)
    if processor:
        write(root, "/fake/processor", processor)
    if cpu_count is not None:
        write(root, "/fake/cpu_count", str(cpu_count))


def command(root: Path, name: str, output: str) -> None:
    """A command on PATH whose stdout is `output` whatever its arguments."""
    write(root, f"/fake/bin/{name}", output)


def sysctl(root: Path, **values: str) -> None:
    """`sysctl -n` answers; keys use "__" for "." (hw__memsize is hw.memsize)."""
    for key, value in values.items():
        write(root, f"/fake/sysctl/{key.replace('__', '.')}", value)


def onnxruntime(
    root: Path, *providers: str, version: str = "1.22.0", c_compiler: str | None = None
) -> None:
    """An installed onnxruntime offering these execution providers (plus the CPU one), on a
    machine with ``c_compiler`` (a path) or none."""
    names = [*providers, "CPUExecutionProvider"]
    data = {
        "version": version,
        "providers": names,
        "ep_devices": [f"{p} on CPU (fake)" for p in names],
        "c_compiler": c_compiler,
    }
    write(root, "/fake/onnxruntime.json", json.dumps(data))


def mlx(root: Path, metal: bool = True) -> None:
    """An installed MLX whose default device is the Metal GPU (or the CPU)."""
    device = "Device(gpu, 0)" if metal else "Device(cpu, 0)"
    write(
        root, "/fake/mlx.json", json.dumps({"version": "0.21.0", "device": device, "metal": metal})
    )


def cpuinfo(root: Path, vendor: str, model: str, cores: int, flags: str) -> None:
    """An x86 /proc/cpuinfo with `cores` logical processors."""
    blocks = [
        f"processor\t: {i}\nvendor_id\t: {vendor}\nmodel name\t: {model}\nflags\t\t: {flags}\n"
        for i in range(cores)
    ]
    write(root, "/proc/cpuinfo", "\n".join(blocks))


def cpuinfo_arm(root: Path, implementer: str, cores: int, features: str = ARM_FEATURES) -> None:
    """An Arm /proc/cpuinfo (no model name; "Features" instead of "flags")."""
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: {features}\n"
        f"CPU implementer\t: {implementer}\nCPU architecture: 8\n"
        for i in range(cores)
    ]
    write(root, "/proc/cpuinfo", "\n".join(blocks))


def pci_device(
    root: Path,
    address: str,
    vendor: int,
    device: int,
    revision: int,
    driver: str | None = None,
    driver_as_dir: bool = False,
    **attributes: str,
) -> Path:
    """A PCI function under /sys/devices with its /sys/bus/pci/devices link and driver."""
    device_dir = root / "sys/devices/pci0000:00/0000:00:08.2" / address
    device_dir.mkdir(parents=True)
    (device_dir / "vendor").write_text(f"0x{vendor:04x}\n")
    (device_dir / "device").write_text(f"0x{device:04x}\n")
    (device_dir / "revision").write_text(f"0x{revision:02x}\n")
    for name, value in attributes.items():
        (device_dir / name).write_text(value + "\n")
    if driver and driver_as_dir:  # some fakes use a plain folder with a `module` link
        (device_dir / "driver").mkdir()
        module = root / "sys/module" / driver
        module.mkdir(parents=True, exist_ok=True)
        os.symlink(module, device_dir / "driver" / "module")
    elif driver:
        driver_dir = root / "sys/bus/pci/drivers" / driver
        driver_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(driver_dir, device_dir / "driver")
    links = root / "sys/bus/pci/devices"
    links.mkdir(parents=True, exist_ok=True)
    os.symlink(device_dir, links / address)
    return device_dir


def accel(root: Path, index: int, device_dir: Path) -> None:
    """/sys/class/accel/accel<index>, the node a loaded NPU driver creates."""
    node = root / f"sys/class/accel/accel{index}"
    node.mkdir(parents=True)
    os.symlink(device_dir, node / "device")
    write(root, f"/dev/accel/accel{index}", "")


def _amd_laptop(
    root: Path, model: str, device: int, revision: int, vbnv: str, driver: bool, ryzen_ai: bool
) -> Path:
    host(root, cpu_count=16)
    write(root, "/opt/xilinx/xrt/lib/libxrt_driver_xdna.so.2", "")  # Ryzen AI's XRT plugin
    cpuinfo(root, "AuthenticAMD", model, 16, ZEN5_FLAGS)
    npu = pci_device(
        root,
        "0000:c4:00.1",
        0x1022,
        device,
        revision,
        driver="amdxdna" if driver else None,
        vbnv=vbnv,
        fw_version="1.0.0.166",
    )
    if driver:
        accel(root, 0, npu)
    if ryzen_ai:
        onnxruntime(root, "VitisAIExecutionProvider", version="1.20.1")
    else:
        onnxruntime(root)
    return root


def strix_laptop(root: Path, driver: bool = True, ryzen_ai: bool = True) -> Path:
    """Ryzen AI 9 HX 370 (Strix Point): XDNA2 NPU 1022:17f0 rev 0x10 bound to amdxdna."""
    return _amd_laptop(
        root, "AMD Ryzen AI 9 HX 370 w/ Radeon 890M", 0x17F0, 0x10, "RyzenAI-npu4", driver, ryzen_ai
    )


def strix_halo_laptop(root: Path) -> Path:
    """Ryzen AI Max+ 395 (Strix Halo): XDNA2 NPU 1022:17f0 rev 0x11."""
    return _amd_laptop(
        root, "AMD RYZEN AI MAX+ 395 w/ Radeon 8060S", 0x17F0, 0x11, "RyzenAI-npu5", True, True
    )


def krackan_laptop(root: Path) -> Path:
    """Ryzen AI 7 350 (Krackan Point): XDNA2 NPU 1022:17f0 rev 0x20."""
    return _amd_laptop(
        root, "AMD Ryzen AI 7 350 w/ Radeon 860M", 0x17F0, 0x20, "RyzenAI-npu6", True, True
    )


def phoenix_laptop(root: Path) -> Path:
    """Ryzen 7 7840U (Phoenix): XDNA NPU 1022:1502 rev 0x00, with Ryzen AI installed."""
    return _amd_laptop(
        root, "AMD Ryzen 7 7840U w/ Radeon 780M Graphics", 0x1502, 0x00, "RyzenAI-npu1", True, True
    )


def lunar_lake_laptop(root: Path, user_mode: bool = True) -> Path:
    """Core Ultra 7 258V (Lunar Lake): NPU 8086:643e bound to intel_vpu, OpenVINO EP installed."""
    host(root, cpu_count=8)
    cpuinfo(root, "GenuineIntel", "Intel(R) Core(TM) Ultra 7 258V", 8, X86_FLAGS + " avx_vnni")
    npu = pci_device(root, "0000:00:0b.0", 0x8086, 0x643E, 0x04, driver="intel_vpu")
    accel(root, 0, npu)
    if user_mode:  # intel-level-zero-npu and intel-driver-compiler-npu
        write(root, "/usr/lib/x86_64-linux-gnu/libze_intel_npu.so.1", "")
        write(root, "/usr/lib/x86_64-linux-gnu/libnpu_driver_compiler.so", "")
    onnxruntime(root, "OpenVINOExecutionProvider")
    return root


def apple_m3(root: Path, rosetta: bool = False, with_mlx: bool = True) -> Path:
    """A MacBook with an Apple M3 (24 GB); under Rosetta the Python is x86_64."""
    host(root, system="Darwin", machine="x86_64" if rosetta else "arm64", cpu_count=8)
    sysctl(
        root,
        machdep__cpu__brand_string="Apple M3",
        hw__memsize=str(24 << 30),
        hw__logicalcpu="8",
        sysctl__proc_translated="1" if rosetta else "0",
        hw__optional__arm__FEAT_BF16="1",
        hw__optional__arm__FEAT_I8MM="1",
    )
    if with_mlx and not rosetta:  # MLX ships arm64 macOS wheels only
        mlx(root, metal=True)
    onnxruntime(root, "CoreMLExecutionProvider")
    return root


def nvidia_server(root: Path, procfs: bool = True, cuda: bool = True) -> Path:
    """A Xeon server with two H100s; the driver's /proc files, or only nvidia-smi."""
    host(root, cpu_count=32)
    cpuinfo(root, "GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", 32, SAPPHIRE_RAPIDS_FLAGS)
    if procfs:
        write(
            root,
            "/proc/driver/nvidia/version",
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  "
            "Tue Mar  5 22:23:56 UTC 2024\n"
            "GCC version:  gcc version 12.2.0\n",
        )
        for bus in ("0000:17:00.0", "0000:65:00.0"):
            write(
                root,
                f"/proc/driver/nvidia/gpus/{bus}/information",
                f"Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 42\n"
                f"Bus Location: \t {bus}\nDevice Minor: \t 0\n",
            )
    else:
        command(
            root,
            "nvidia-smi",
            "NVIDIA H100 80GB HBM3, 81559 MiB\nNVIDIA H100 80GB HBM3, 81559 MiB\n",
        )
    onnxruntime(root, *(["CUDAExecutionProvider"] if cuda else []), version="1.20.1")
    return root


def snapdragon_windows(root: Path) -> Path:
    """A Snapdragon X Elite laptop on Windows on Arm with onnxruntime-qnn."""
    host(
        root,
        system="Windows",
        machine="ARM64",
        cpu_count=12,
        processor="ARMv8 (64-bit) Family 8 Model 1 Revision 201, Qualcomm Technologies Inc",
    )
    command(root, "pnputil", "Microsoft PnP Utility\n\nInstance ID: ACPI\\QCOM0D0A\\0\n")
    onnxruntime(root, "QNNExecutionProvider")
    return root


def snapdragon_linux(root: Path, fastrpc: bool = True) -> Path:
    """A Linux Snapdragon board (SM8650) whose FastRPC driver exposes the compute DSP."""
    host(root, machine="aarch64", cpu_count=8)
    cpuinfo_arm(root, "0x51", 8)
    write(root, "/sys/devices/soc0/family", "Snapdragon")
    write(root, "/sys/devices/soc0/machine", "SM8650")
    write(root, "/sys/devices/soc0/soc_id", "557")
    if fastrpc:
        write(root, "/dev/fastrpc-cdsp", "")
        write(root, "/dev/fastrpc-adsp", "")
    onnxruntime(root, "QNNExecutionProvider")
    return root


def plain_linux(root: Path) -> Path:
    """An x86 Linux box with no accelerator and the CPU-only onnxruntime."""
    host(root, cpu_count=4)
    cpuinfo(root, "AuthenticAMD", "AMD EPYC 7763 64-Core Processor", 4, X86_FLAGS)
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    onnxruntime(root)
    return root


def zen4_server_openvino(root: Path) -> Path:
    """An AMD EPYC (Zen 4: AVX-512 BF16) with onnxruntime-openvino and no accelerator."""
    host(root, cpu_count=2)
    cpuinfo(root, "AuthenticAMD", "AMD EPYC 9R14", 2, ZEN5_FLAGS)
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    onnxruntime(root, "OpenVINOExecutionProvider", version="1.24.1")
    return root


def zen4_server_openvino_cc(root: Path) -> Path:
    """The same with a C compiler: the cpu profile's own kernels are built, and faster."""
    zen4_server_openvino(root)
    onnxruntime(root, "OpenVINOExecutionProvider", version="1.24.1", c_compiler="/usr/bin/cc")
    return root


def old_xeon_openvino(root: Path) -> Path:
    """A Xeon without AVX-512 BF16, with onnxruntime-openvino: bf16 would be emulated, slow."""
    host(root, cpu_count=8)
    cpuinfo(root, "GenuineIntel", "Intel(R) Xeon(R) Gold 6148", 8, X86_FLAGS + " avx512f avx512bw")
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    onnxruntime(root, "OpenVINOExecutionProvider", version="1.24.1")
    return root
