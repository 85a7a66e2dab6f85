"""`runtime detect` and profile selection end to end, on this machine and on faked machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.cli import main
from runtime.config.profiles import builtin_profiles_dir, load_profiles
from runtime.config.selection import select_profile
from runtime.config.settings import Settings
from runtime.errors import ProfileError
from runtime.hardware import run_probes
from runtime.plugins import Plugins
from tests import fakehw


def test_this_machine_chooses_cpu_with_reasons(capsys):
    assert main(["detect", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chosen"]["profile"] == "cpu" and data["chosen"]["backend"] == "onnx"
    assert data["profiles"]["numpy"]["matches"]  # the last resort matches everywhere too
    others = {n: v for n, v in data["profiles"].items() if n not in ("cpu", "numpy")}
    assert len(others) >= 6
    assert all(not v["matches"] and len(v["reason"]) > 10 for v in others.values())
    assert data["backends"]["cpu"]["available"] and data["backends"]["onnx"]["available"]
    assert main(["detect"]) == 0
    text = capsys.readouterr().out
    assert "Chosen: cpu" in text and "xdna2" in text and "no: " in text


@pytest.mark.parametrize(
    "build, profile",
    [
        (fakehw.strix_laptop, "xdna2"),
        (fakehw.krackan_laptop, "xdna2"),
        (fakehw.phoenix_laptop, "xdna"),
        (fakehw.lunar_lake_laptop, "intel-npu"),
        (fakehw.apple_m3, "apple-silicon"),
        (fakehw.nvidia_server, "nvidia"),
    ],
)
def test_faked_machines_through_the_runtime_stack(tmp_path, build, profile):
    """The same path `runtime detect` takes: plugin probes, builtin profiles, selection."""
    from backends.mlx import plugin as mlx_plugin
    from backends.onnx import plugin as onnx_plugin

    build(tmp_path)
    plugins = Plugins(load_entry_points=False, extra=[onnx_plugin, mlx_plugin])
    report = run_probes(tmp_path, plugins.probes())
    profiles = load_profiles(plugins.profile_dirs())

    class Ready:  # a backend that is available, standing in for onnx/mlx on that machine
        def __init__(self, name):
            self.name = name

        def available(self):
            from runtime.backend import Availability

            return Availability(True, "stand-in")

    backends = {n: Ready(n) for n in ("cpu", "onnx", "mlx")}
    assert select_profile(profiles, report, backends).profile.name == profile
    # without its backend the machine falls back to cpu, saying why
    chosen = select_profile(profiles, report, {"cpu": Ready("cpu")})  # numpy backend only
    assert chosen.profile.name == "numpy"
    assert chosen.fallback_note and profile in chosen.fallback_note


def test_strict_refuses_to_fall_back(tmp_path):
    report = run_probes(tmp_path)
    profiles = load_profiles([builtin_profiles_dir()])
    backends = Plugins().backends()
    with pytest.raises(ProfileError, match="xdna2 cannot run here.*--strict"):
        select_profile(profiles, report, backends, "xdna2", strict=True)
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        select_profile(profiles, report, backends, "nope")


def test_cli_profile_fallback_line_and_strict(capsys, tmp_path):
    from tests.conftest import eval_file

    jfk = str(eval_file("jfk.flac"))
    assert main(["transcribe", jfk, "--profile", "xdna2"]) == 0
    out, err = capsys.readouterr()
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "falling back to cpu" in warning[0] and "XDNA2" in warning[0]
    assert "ask not what your country" in out
    assert main(["transcribe", jfk, "--profile", "xdna2", "--strict"]) == 2
    assert "--strict" in capsys.readouterr().err


def test_profiles_command(capsys):
    assert main(["profiles"]) == 0
    listing = capsys.readouterr().out
    for name in (
        "cpu",
        "numpy",
        "xdna",
        "xdna2",
        "intel-npu",
        "qualcomm-npu",
        "nvidia",
        "apple-silicon",
    ):
        assert name in listing
    assert main(["profiles", "xdna2"]) == 0
    assert "VitisAIExecutionProvider" in capsys.readouterr().out
    assert main(["profiles", "nope"]) == 2


def test_settings_from_env_and_toml(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('model = "base"\nprofile = "cpu"\n[decoding]\nbeam_size = 3\n')
    monkeypatch.setenv("RUNTIME_CONFIG", str(config))
    monkeypatch.setenv("RUNTIME_DECODING__BEAM_SIZE", "5")
    s = Settings()
    assert (s.model, s.profile, s.decoding.beam_size) == ("base", "cpu", 5)  # env beats TOML
    assert Settings(model="tiny.en").model == "tiny.en"  # code/CLI beats both
    monkeypatch.setenv("RUNTIME_DECODING__BEAM_SIZE", "zero")
    with pytest.raises(Exception, match="beam_size"):
        Settings()


def test_detect_json_from_a_faked_root_in_a_subprocess(tmp_path):
    fakehw.strix_laptop(tmp_path)
    env = {**os.environ, "RUNTIME_HARDWARE_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "detect", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    data = json.loads(proc.stdout)
    assert data["hardware"]["amd_npu"]["details"]["generation"] == "xdna2"
    assert data["profiles"]["xdna2"]["matches"] or "onnx" in data["profiles"]["xdna2"]["reason"]


def test_detect_loads_the_chosen_profile_and_shows_where_it_runs(tmp_path, monkeypatch, capsys):
    """On a faked Strix Point laptop detect chooses xdna2; loading it here, where onnxruntime has
    no VitisAI provider, shows the fallback instead of hiding it."""
    fakehw.strix_laptop(tmp_path)
    monkeypatch.setenv("RUNTIME_HARDWARE_ROOT", str(tmp_path))
    assert main(["detect"]) == 0
    text = capsys.readouterr().out
    assert "Chosen: xdna2" in text
    if "VitisAIExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        assert "VitisAIExecutionProvider not available; encoder on CPUExecutionProvider" in text
    assert "decoder: " in text and "nodes on CPUExecutionProvider" in text
    assert main(["detect", "--json", "--no-load"]) == 0
    assert "loaded" not in json.loads(capsys.readouterr().out)["chosen"]
