"""NPU profiles on their stand-ins (``--emulate``), and how an EP that fails to start is reported.

Two kinds of tests:

- Everywhere: choosing an emulated profile, `runtime detect`'s listing, and the fallback path of
  a provider that fails to start (one WARNING line on stderr, nothing on stdout, ``--strict``
  raises), with the failure injected.
- ``emulated``: the vendor stacks for real, run by ``.ci/run`` in their own virtual environments
  (``pip install ".[qnn,test]"``: the QNN HTP simulator; ``pip install onnxruntime-openvino
  ".[test]"``: OpenVINO's CPU device). Where the stack is not installed they skip, saying so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends.mlx import plugin as mlx_plugin
from backends.onnx import plugin as onnx_plugin
from runtime.config.profiles import builtin_profiles_dir, load_profiles
from runtime.config.selection import select_profile
from runtime.errors import ProfileError
from runtime.hardware import run_probes
from runtime.plugins import Plugins
from tests import fakehw
from tests.conftest import REPO, cpu_has, eval_file

PLUGINS = Plugins(load_entry_points=False, extra=[onnx_plugin, mlx_plugin])
JFK = "ask not what your country can do for you"


def _has_provider(name: str) -> bool:
    try:
        from backends.onnx import eps

        if name == "QNNExecutionProvider":
            eps.register_plugin(name)
        return name in eps.available_providers()
    except ImportError:
        return False


def _report(root: Path):
    return run_probes(root, PLUGINS.probes())


class _Ready:
    """A backend that is available, standing in for onnx on a faked machine."""

    def __init__(self, name: str) -> None:
        self.name = name

    def available(self):
        from runtime.backend import Availability

        return Availability(True, "stand-in")


BACKENDS = {n: _Ready(n) for n in ("cpu", "onnx", "mlx")}


# --- choosing an emulated profile -----------------------------------------------------------


def _x86_with(root: Path, *providers: str) -> Path:
    fakehw.plain_linux(root)
    fakehw.onnxruntime(root, *providers)
    return root


def test_emulate_selects_a_profile_whose_software_loads(tmp_path: Path) -> None:
    profiles = load_profiles([builtin_profiles_dir()])
    report = _report(_x86_with(tmp_path, "QNNExecutionProvider"))
    sel = select_profile(profiles, report, BACKENDS, "qualcomm-npu", emulate=True)
    assert sel.profile.name == "qualcomm-npu" and sel.emulated and sel.fallback_note is None
    assert sel.emulation.startswith("emulating qualcomm-npu: QNN's HTP backend in simulation")
    # without --emulate the same machine has no Hexagon NPU: the fallback says so
    plain = select_profile(profiles, report, BACKENDS, "qualcomm-npu")
    assert plain.profile.name == "cpu" and not plain.emulated
    assert "no Qualcomm Hexagon NPU" in plain.fallback_note


def test_emulate_without_the_software_falls_back_or_fails_strictly(tmp_path: Path) -> None:
    profiles = load_profiles([builtin_profiles_dir()])
    report = _report(_x86_with(tmp_path))  # onnxruntime without QNN or OpenVINO
    sel = select_profile(profiles, report, BACKENDS, "qualcomm-npu", emulate=True)
    assert sel.profile.name == "cpu" and not sel.emulated
    assert "cannot be emulated here: no QNN execution provider" in sel.fallback_note
    with pytest.raises(ProfileError, match="intel-npu cannot be emulated here.*--strict"):
        select_profile(profiles, report, BACKENDS, "intel-npu", strict=True, emulate=True)
    with pytest.raises(
        ProfileError,
        match="cpu cannot be emulated here: it has no "
        r"\[emulation\] section",
    ):
        select_profile(profiles, report, BACKENDS, "cpu", strict=True, emulate=True)
    with pytest.raises(ProfileError, match="--emulate needs --profile NAME"):
        select_profile(profiles, report, BACKENDS, "auto", emulate=True)


def test_detect_says_what_can_be_emulated_here(tmp_path: Path, monkeypatch, capsys) -> None:
    from runtime.cli import main

    _x86_with(tmp_path, "OpenVINOExecutionProvider")
    monkeypatch.setenv("RUNTIME_HARDWARE_ROOT", str(tmp_path))
    assert main(["detect", "--json", "--no-load"]) == 0
    profiles = json.loads(capsys.readouterr().out)["profiles"]
    assert profiles["intel-npu"]["emulatable"] and not profiles["intel-npu"]["matches"]
    assert not profiles["qualcomm-npu"]["emulatable"] and not profiles["cpu"]["emulatable"]
    assert main(["detect", "--no-load"]) == 0
    text = capsys.readouterr().out
    assert "can be emulated here (--profile intel-npu --emulate): OpenVINO's CPU device" in text


# --- a provider that fails to start -----------------------------------------------------------


@pytest.fixture
def failing_accelerator(monkeypatch):
    """Session creation fails for any provider list with an accelerator in it."""
    from backends.onnx import sessions

    real = sessions._new_session

    def new_session(path, so, providers):
        if any(p.name != sessions.CPU for p in providers):
            raise RuntimeError("[ONNXRuntimeError] : 11 : EP_FAIL : the NPU said no\n(detail)")
        return real(path, so, providers)

    monkeypatch.setattr(sessions, "_new_session", new_session)


def test_a_provider_that_fails_to_start_is_one_warning_line(
    tiny_model, failing_accelerator, caplog, capfd
) -> None:
    from backends.onnx.export import cache_root, ensure_graph, model_folder
    from backends.onnx.options import GraphOptions
    from backends.onnx.sessions import OpenRequest, open_graph
    from runtime.errors import BackendUnavailableError

    path, manifest = ensure_graph(
        tiny_model, "cross_kv", "fp32", None, model_folder(cache_root(), tiny_model)
    )
    spec = GraphOptions(
        providers=[{"name": "AzureExecutionProvider"}, {"name": "CPUExecutionProvider"}],
        session_config={"session.disable_cpu_ep_fallback": "1"},
    )
    with caplog.at_level(logging.WARNING, logger="backends.onnx.sessions"):
        graph = open_graph(path.parent / manifest.file, manifest, "cross_kv", spec)
    assert graph.session.get_providers() == ["CPUExecutionProvider"]  # retried without the entry
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    line = record.getMessage()
    assert line == (
        "AzureExecutionProvider failed to start (EP_FAIL: the NPU said no (detail)); "
        "cross_kv on CPUExecutionProvider (28/28 nodes)"
    )
    assert capfd.readouterr().out == ""  # ONNX Runtime's own fallback banner is off
    with pytest.raises(
        BackendUnavailableError,
        match="could not start AzureExecutionProvider with strict placement",
    ):
        open_graph(
            path.parent / manifest.file, manifest, "cross_kv", spec, OpenRequest(strict=True)
        )


def test_ort_errors_are_cut_to_the_eps_own_words() -> None:
    from backends.onnx.sessions import ep_error

    nested = RuntimeError(
        "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/session/plugin_ep/"
        "ep_plugin_provider_interfaces.cc:393 virtual std::unique_ptr<X> onnxruntime::"
        "PluginExecutionProviderFactory::CreateProvider(const OrtSessionOptions&, const "
        "OrtLogger&) [ONNXRuntimeError] : 1 : FAIL : FP16 precision mode is enabled but "
        "soc_model is not specified.\n"
    )
    assert (
        ep_error(nested) == "FAIL: FP16 precision mode is enabled but soc_model is not specified."
    )
    assert ep_error(ValueError("plain words")) == "plain words"


def _run_child(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh Python at the repository root, its stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )


def test_native_stdout_goes_to_the_log() -> None:
    """What a vendor library prints on file descriptor 1 never reaches stdout (the transcript)."""
    code = (
        "import logging, os; logging.basicConfig(level=logging.INFO); "
        "from backends.onnx.eps import native_stdout_to_log\n"
        "with native_stdout_to_log():\n    os.write(1, b'# LIBNATIVE: banner\\n')\n"
        "print('transcript')"
    )
    out = _run_child(code)
    assert out.stdout == "transcript\n"
    assert "native output: # LIBNATIVE: banner" in out.stderr


def test_native_stdout_stays_redirected_while_any_thread_needs_it() -> None:
    """Graphs open side by side: a thread leaving its redirection while another is still
    inside must not restore stdout under it, and the last to leave restores it."""
    code = (
        "import logging, os, threading; logging.basicConfig(level=logging.INFO); "
        "from backends.onnx.eps import native_stdout_to_log\n"
        "inside, done = threading.Event(), threading.Event()\n"
        "def other():\n"
        "    with native_stdout_to_log():\n"
        "        inside.set(); done.wait(); os.write(1, b'# second banner\\n')\n"
        "t = threading.Thread(target=other); t.start(); inside.wait()\n"
        "with native_stdout_to_log():\n    os.write(1, b'# first banner\\n')\n"
        "os.write(1, b'# while the other is inside\\n'); done.set(); t.join()\n"
        "print('transcript')"
    )
    out = _run_child(code)
    assert out.stdout == "transcript\n"
    for line in ("# first banner", "# second banner", "# while the other is inside"):
        assert f"native output: {line}" in out.stderr


# --- the vendor stacks for real (.ci/run's QNN and OpenVINO environments) ---------------------

needs_qnn = pytest.mark.skipif(
    not _has_provider("QNNExecutionProvider"),
    reason="onnxruntime-qnn is not installed (.ci/run runs this in "
    "its QNN environment: pip install '.[qnn,test]')",
)
needs_openvino = pytest.mark.skipif(
    not _has_provider("OpenVINOExecutionProvider"),
    reason="the OpenVINO EP is not installed (.ci/run runs this in its OpenVINO environment: "
    "pip install onnxruntime-openvino '.[test]')",
)


def _transcribe(
    *args: str, profile_dir: Path | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNTIME_")}
    if profile_dir is not None:
        env["RUNTIME_PROFILE_DIRS"] = json.dumps([str(profile_dir)])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "transcribe", str(eval_file("jfk.flac")), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def _one_line_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING")]


@pytest.mark.emulated
@needs_qnn
def test_qualcomm_npu_on_the_htp_simulator() -> None:
    """The encoder compiled and run by QNN's HTP backend (simulated), no CPU fallback allowed,
    placement from QNN's own op trace; stdout is the transcript and nothing else."""
    done = _transcribe("--profile", "qualcomm-npu", "--emulate", "--strict", "--verbose")
    assert done.returncode == 0, done.stderr
    assert JFK in done.stdout.lower()
    assert all(line.startswith("[") for line in done.stdout.splitlines()), done.stdout
    assert "note: emulating qualcomm-npu" in done.stderr
    placed = re.search(
        r"encoder: QNNExecutionProvider on HTP \(soc_model 60, V73\): (\d+)/(\d+) ONNX nodes "
        r"\(QNN op trace\)",
        done.stderr,
    )
    assert placed and placed[1] == placed[2], done.stderr  # every node on the HTP, by QNN's count
    assert "LIBNATIVE" not in done.stdout and "EP Error" not in done.stdout + done.stderr


def _variant(tmp_path: Path, source: str, name: str, edit) -> Path:
    """A copy of a built-in profile under another name, changed by ``edit`` (text -> text)."""
    text = (builtin_profiles_dir() / f"{source}.toml").read_text()
    text = edit(text.replace(f'name = "{source}"', f'name = "{name}"'))
    (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path


@pytest.mark.emulated
@needs_qnn
def test_qnn_that_fails_to_start_is_one_line_and_strict_exits_2(tmp_path: Path) -> None:
    # the FP16 flag without soc_model: the QNN EP refuses to start (measured: "FP16 precision
    # mode is enabled but soc_model is not specified")
    profiles = _variant(
        tmp_path,
        "qualcomm-npu",
        "qnn-broken",
        lambda t: t.replace(
            'options = { soc_model = "60", htp_arch = "73" }',
            'options = { enable_htp_fp16_precision = "1" }',
        ),
    )
    done = _transcribe("--profile", "qnn-broken", "--emulate", profile_dir=profiles)
    assert done.returncode == 0, done.stderr
    assert JFK in done.stdout.lower() and "EP Error" not in done.stdout
    [warning] = [w for w in _one_line_warnings(done.stderr) if "encoder" in w]
    assert "QNNExecutionProvider" in warning and "soc_model is not specified" in warning
    assert "encoder on CPUExecutionProvider" in warning
    strict = _transcribe("--profile", "qnn-broken", "--emulate", "--strict", profile_dir=profiles)
    assert strict.returncode == 2 and strict.stdout == ""
    errors = [line for line in strict.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "soc_model is not specified" in errors[0]
    assert "Traceback" not in strict.stderr


@pytest.mark.emulated
@needs_openvino
@pytest.mark.skipif(not cpu_has("avx512_bf16"), reason="this CPU has no AVX-512 BF16")
def test_cpu_bf16_is_chosen_and_runs_the_encoder_on_openvinos_cpu_plugin() -> None:
    """On a CPU with AVX-512 BF16 and onnxruntime-openvino but no C compiler for the cpu
    profile's kernels, detection picks cpu-bf16 by itself: the encoder compiled by OpenVINO for
    the CPU (bf16), the decoder on ONNX Runtime's CPU. With a compiler it picks cpu."""
    with_compiler = _transcribe("--verbose")
    assert with_compiler.returncode == 0, with_compiler.stderr
    assert "profile cpu:" in with_compiler.stderr
    done = _transcribe("--strict", "--verbose", env_extra={"CC": "no-such-compiler-here"})
    assert done.returncode == 0, done.stderr
    assert JFK in done.stdout.lower()
    assert all(line.startswith("[") for line in done.stdout.splitlines()), done.stdout
    assert "profile cpu-bf16:" in done.stderr
    assert "encoder: OpenVINOExecutionProvider on CPU: 1 compiled partition" in done.stderr
    decoder = re.search(r"decoder: (\d+)/(\d+) nodes on CPUExecutionProvider", done.stderr)
    assert decoder and decoder[1] == decoder[2], done.stderr
    assert "[W:onnxruntime" not in done.stderr  # nothing from ONNX Runtime's own logger


@pytest.mark.emulated
@needs_openvino
def test_intel_npu_on_openvinos_cpu_device() -> None:
    done = _transcribe("--profile", "intel-npu", "--emulate", "--strict", "--verbose")
    assert done.returncode == 0, done.stderr
    assert JFK in done.stdout.lower()
    assert all(line.startswith("[") for line in done.stdout.splitlines()), done.stdout
    assert "note: emulating intel-npu" in done.stderr
    assert (
        "encoder: OpenVINOExecutionProvider on CPU: 1 compiled partition (OpenVINO "
        "device_type; no fallback to its CPU plugin)"
    ) in done.stderr


@pytest.mark.emulated
@needs_openvino
def test_openvino_npu_missing_is_one_line_and_strict_exits_2(tmp_path: Path) -> None:
    """The intel-npu profile as on an NPU machine, on a machine without one: OpenVINO cannot
    compile for the NPU, and with its CPU fallback off that is an error we report."""
    profiles = _variant(
        tmp_path,
        "intel-npu",
        "npu-here",
        lambda t: t.replace('[[match]]\nprobe = "intel_npu"\nlabel = "Intel NPU"\n', ""),
    )
    done = _transcribe("--profile", "npu-here", profile_dir=profiles)
    assert done.returncode == 0, done.stderr
    assert JFK in done.stdout.lower() and "EP Error" not in done.stdout
    [warning] = [w for w in _one_line_warnings(done.stderr) if "encoder" in w]
    assert "OpenVINOExecutionProvider" in warning and "encoder on CPUExecutionProvider" in warning
    strict = _transcribe("--profile", "npu-here", "--strict", profile_dir=profiles)
    assert strict.returncode == 2 and strict.stdout == ""
    assert len([line for line in strict.stderr.splitlines() if line.startswith("error:")]) == 1


# --- the exact options each NPU profile hands its EP ------------------------------------------


def _encoder_options(name: str, emulate: bool = False) -> tuple[str, dict[str, str], object]:
    """The first encoder provider of a built-in profile with the options the backend would
    attach it with (expanded, cache-keyed, as its adapter prepares them), and the graph spec."""
    from backends.onnx.adapters import adapter
    from backends.onnx.options import OnnxOptions
    from backends.onnx.sessions import OpenRequest, _expanded

    profiles = load_profiles([builtin_profiles_dir()])
    options = {k: v for k, v in profiles[name].backend_options.items() if k != "precision"}
    spec = OnnxOptions(**options).encoder
    provider = spec.providers[0].emulated() if emulate else spec.providers[0]
    request = OpenRequest(
        cache_tag="TAG",
        variables=(("PROFILE_DIR", str(builtin_profiles_dir())), ("ONNX_CACHE", "/cache/onnx")),
    )
    warnings: list[str] = []
    built = _expanded(provider, request, warnings)
    assert warnings == []
    return provider.name, adapter(provider.name).prepare(built, Path("/work"), False), spec


def test_xdna2_gives_vitisai_exactly_the_documented_options(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    name, options, spec = _encoder_options("xdna2")
    assert name == "VitisAIExecutionProvider"
    assert options == {
        "config_file": f"{builtin_profiles_dir()}/vitisai/whisper_encoder_bf16.json",
        "cache_dir": "/home/u/.cache/whisper-runtime/vitisai",
        "cache_key": "whisper-encoder-TAG",
        "enable_cache_file_io_in_mem": "0",
    }
    assert Path(options["config_file"]).is_file()
    assert spec.session_config == {} and spec.graph_optimization_level == "all"


def test_vitisai_report_file_is_named_while_the_session_is_created(monkeypatch) -> None:
    from backends.onnx.adapters import VITISAI_REPORT_ENV, adapter

    monkeypatch.delenv(VITISAI_REPORT_ENV, raising=False)
    with adapter("VitisAIExecutionProvider").creating():
        assert os.environ[VITISAI_REPORT_ENV] == "vitisai_ep_report.json"
    assert VITISAI_REPORT_ENV not in os.environ


def test_intel_npu_gives_openvino_exactly_the_documented_options() -> None:
    name, options, spec = _encoder_options("intel-npu")
    assert name == "OpenVINOExecutionProvider"
    assert options == {
        "device_type": "NPU",
        "load_config": (
            '{"NPU": {"CACHE_DIR": "/cache/onnx/openvino", "PERFORMANCE_HINT": "LATENCY"}}'
        ),
    }
    assert json.loads(options["load_config"])["NPU"]["CACHE_DIR"] == "/cache/onnx/openvino"
    assert spec.session_config == {"session.disable_cpu_ep_fallback": "1"}
    assert spec.graph_optimization_level == "disable"
    assert _encoder_options("intel-npu", emulate=True)[1]["device_type"] == "CPU"


def test_qualcomm_npu_gives_qnn_exactly_the_documented_options() -> None:
    name, options, _ = _encoder_options("qualcomm-npu")
    assert name == "QNNExecutionProvider"
    assert options == {
        "backend_type": "htp",
        "htp_performance_mode": "high_performance",
        "enable_framework_op_trace": "1",
        "framework_op_trace_dir": "/work",
    }
    emulated = _encoder_options("qualcomm-npu", emulate=True)[1]
    assert emulated["soc_model"] == "60" and emulated["htp_arch"] == "73"
