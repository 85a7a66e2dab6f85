"""The probes the onnx and mlx plugins register: what the installed libraries offer.

The core probes hardware only; what onnxruntime and MLX can reach is asked by their backends'
probes (``register_probes``), against fake machines (tests/fakehw.py) and on this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from backends.mlx.probe import probe_mlx
from backends.onnx.probe import conflict_reason, module_owners, probe_onnxruntime
from runtime.plugins import Plugins
from tests import fakehw

REPO = Path(__file__).resolve().parents[1]


def test_onnxruntime_lists_providers_and_devices(tmp_path: Path) -> None:
    details = probe_onnxruntime(fakehw.apple_m3(tmp_path)).details
    assert "CoreMLExecutionProvider" in details["providers"]
    assert details["version"] == "1.22.0" and details["ep_devices"]


def test_onnxruntime_absent_says_how_to_install(tmp_path: Path) -> None:
    fakehw.host(tmp_path)
    finding = probe_onnxruntime(tmp_path)
    assert not finding.present and finding.details["providers"] == []
    assert "onnxruntime is not installed" in finding.reason
    assert "whisper-accel-runtime[cpu]" in finding.reason


def test_conflicting_onnxruntime_builds_are_named_with_the_fix(tmp_path: Path) -> None:
    fakehw.host(tmp_path)
    fakehw.write(
        tmp_path,
        "/fake/onnxruntime.json",
        json.dumps(
            {
                "version": "1.24.1",
                "build": "onnxruntime-openvino",
                "providers": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                "distributions": ["onnxruntime 1.32.0", "onnxruntime-openvino 1.24.1"],
            }
        ),
    )
    details = probe_onnxruntime(tmp_path).details
    assert details["conflict"] is True
    why = details["conflict_reason"]
    assert "onnxruntime 1.32.0 and onnxruntime-openvino 1.24.1" in why
    assert why.endswith(
        "pip uninstall -y onnxruntime onnxruntime-openvino && pip install onnxruntime-openvino"
    )
    assert conflict_reason(["onnxruntime 1.32.0"], "onnxruntime") is None


def test_onnxruntime_on_this_machine_sees_the_cpu_provider_and_one_build() -> None:
    finding = probe_onnxruntime(Path("/"))
    assert finding.present, finding.reason
    assert "CPUExecutionProvider" in finding.details["providers"]
    assert len(module_owners()) == 1 and "conflict" not in finding.details


def test_module_owners_finds_two_builds_on_the_path(tmp_path: Path, monkeypatch) -> None:
    """Two distributions that both install the onnxruntime module (and a plugin that does not)
    in a folder on sys.path: both owners are named, the plugin is not."""
    for name, version, module in (
        ("onnxruntime", "1.32.0", "onnxruntime"),
        ("onnxruntime-openvino", "1.24.1", "onnxruntime"),
        ("onnxruntime-qnn", "2.0.0", "onnxruntime_qnn"),
    ):
        info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{module}/__init__.py,,\n")
    monkeypatch.setattr("sys.path", [str(tmp_path)])
    assert module_owners() == ["onnxruntime 1.32.0", "onnxruntime-openvino 1.24.1"]


def test_mlx_reports_metal(tmp_path: Path) -> None:
    finding = probe_mlx(fakehw.apple_m3(tmp_path))
    assert finding.present and finding.details["metal"] is True
    assert finding.details["device"] == "Device(gpu, 0)"


def test_mlx_absent_says_why_metal_is_unusable(tmp_path: Path) -> None:
    finding = probe_mlx(fakehw.apple_m3(tmp_path, with_mlx=False))
    assert not finding.present and finding.details["metal"] is False
    assert "mlx is not installed" in finding.details["metal_reason"]


def test_the_plugins_register_their_probes() -> None:
    names = [getattr(p, "probe_name", "") for p in Plugins().probes()]
    assert "onnxruntime" in names and "mlx" in names and "software" not in names


def test_listing_probes_imports_no_framework() -> None:
    code = (
        "import sys; from runtime.plugins import Plugins; Plugins().probes(); "
        "print(sorted({'onnxruntime', 'mlx'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"
