"""Hardware profiles: loading and validating TOML, matching rules, choosing with fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.mlx import plugin as mlx_plugin
from backends.onnx import plugin as onnx_plugin
from runtime.config.profiles import (
    Profile,
    builtin_profiles_dir,
    choose_profile,
    evaluate,
    find_profile,
    load_profile,
    load_profiles,
)
from runtime.errors import ProfileError
from runtime.hardware import BUILTIN_PROBES, Finding, HardwareReport
from runtime.hardware import run_probes as run_core_probes
from runtime.plugins import Plugins
from tests import fakehw

BUILTIN = {
    "cpu",
    "cpu-bf16",
    "apple-silicon",
    "xdna2",
    "xdna",
    "intel-npu",
    "qualcomm-npu",
    "nvidia",
    "numpy",
}


# the core's hardware probes and the onnx and mlx plugins' library probes, as a Runtime runs them
PROBES = Plugins(load_entry_points=False, extra=[onnx_plugin, mlx_plugin]).probes()
PROBE_NAMES = {getattr(p, "probe_name", "") for p in PROBES}


def run_probes(root: Path | None = None) -> HardwareReport:
    return run_core_probes(root or Path("/"), PROBES)


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    return load_profiles([builtin_profiles_dir()])


def all_available(backend: str) -> tuple[bool, str]:
    return True, ""


def unavailable(*backends: str):
    def check(backend: str) -> tuple[bool, str]:
        return (False, f"{backend} is not installed") if backend in backends else (True, "")

    return check


# --- the built-in profiles ------------------------------------------------------------


def test_builtin_profiles_load(profiles: dict[str, Profile]) -> None:
    assert set(profiles) == BUILTIN
    assert builtin_profiles_dir() == Path(__file__).resolve().parents[1] / "profiles"
    for profile in profiles.values():
        assert profile.source is not None and profile.source.parent == builtin_profiles_dir()
        # every chain ends at the numpy profile, which runs everywhere
        assert profile.name == "numpy" or profile.fallback[-1] == "numpy", profile.name
        assert profile.name == "numpy" or profile.priority > profiles["numpy"].priority
        for rule in profile.match:
            assert rule.probe in PROBE_NAMES, (profile.name, rule.probe)
        if profile.emulation:
            assert set(profile.emulation.replaces) <= set(BUILTIN_PROBES), profile.name


def test_cpu_profiles_match_everything(profiles: dict[str, Profile]) -> None:
    numpy_ = profiles["numpy"]
    assert numpy_.match == [] and numpy_.fallback == [] and numpy_.backend == "cpu"
    assert evaluate(numpy_, HardwareReport({})).matches
    cpu = profiles["cpu"]  # the fastest CPU path measured: ONNX Runtime int8
    assert cpu.match == [] and cpu.fallback == ["numpy"] and cpu.backend == "onnx"
    assert cpu.backend_options["precision"] == "int8"
    assert evaluate(cpu, HardwareReport({})).matches


def test_npu_profiles_use_the_vendor_execution_providers(profiles: dict[str, Profile]) -> None:
    def encoder_provider(name: str) -> dict:
        return profiles[name].backend_options["encoder"]["providers"][0]

    vitis = encoder_provider("xdna2")
    assert vitis["name"] == "VitisAIExecutionProvider"
    assert vitis["options"]["config_file"] == "${PROFILE_DIR}/vitisai/whisper_encoder_bf16.json"
    assert vitis["options"]["enable_cache_file_io_in_mem"] == "0"  # disk cache and the report
    assert {"cache_dir", "cache_key"} <= set(vitis["options"])
    assert not {"target", "xclbin", "log_level"} & set(vitis["options"])  # INT8-only / removed
    assert profiles["xdna2"].backend_options["precision"] == "fp32"  # compiled to BF16 by the EP
    openvino = encoder_provider("intel-npu")
    assert openvino["options"]["device_type"] == "NPU" and openvino["device_types"] == ["NPU"]
    assert '"CACHE_DIR"' in openvino["options"]["load_config"]
    assert openvino["emulation"]["options"] == {"device_type": "CPU"}
    encoder = profiles["intel-npu"].backend_options["encoder"]
    assert encoder["session_config"] == {"session.disable_cpu_ep_fallback": "1"}
    assert encoder["graph_optimization_level"] == "disable"
    qnn = encoder_provider("qualcomm-npu")
    assert qnn["name"] == "QNNExecutionProvider" and qnn["options"]["backend_type"] == "htp"
    assert "backend_path" not in qnn["options"]  # QnnHtp.dll was Windows-only
    assert "enable_htp_fp16_precision" not in qnn["options"]  # refused without soc_model
    assert qnn["emulation"]["options"] == {"soc_model": "60", "htp_arch": "73"}
    assert encoder_provider("nvidia")["name"] == "CUDAExecutionProvider"
    for name in ("xdna2", "intel-npu", "qualcomm-npu"):
        options = profiles[name].backend_options
        assert options["static_shapes"] is True and options["encoder_batch_size"] == 1
        # the static encoder runs a batch in several calls; the CPU decoder keeps it together
        assert profiles[name].batcher.batch_size == 8
        assert profiles[name].batcher.decoder == "continuous"
        assert options["decoder"]["providers"] == [{"name": "CPUExecutionProvider"}]
    assert (builtin_profiles_dir() / "vitisai" / "whisper_encoder_bf16.json").is_file()


def test_vitisai_config_is_a_bf16_configuration() -> None:
    """Ryzen AI 1.6+ BF16 configs: the vaiml_partition pass and a `target` section."""
    import json

    config = json.loads(
        (builtin_profiles_dir() / "vitisai" / "whisper_encoder_bf16.json").read_text()
    )
    assert config["target"] == "VAIML"
    assert [t["pass"] for t in config["targets"]] == [["init", "vaiml_partition"]]
    partition = {p["name"]: p for p in config["passes"]}["vaiml_partition"]
    assert partition["plugin"] == "vaip-pass_vaiml_partition"
    assert partition["vaiml_config"]["optimize_level"] in (1, 2, 3)


def test_emulated_profiles_say_what_stands_in(profiles: dict[str, Profile]) -> None:
    emulated = {n: p.emulation for n, p in profiles.items() if p.emulation}
    assert set(emulated) == {"intel-npu", "qualcomm-npu"}
    assert emulated["qualcomm-npu"].replaces == ["qualcomm_npu"]
    assert "simulat" in emulated["qualcomm-npu"].description
    assert emulated["intel-npu"].replaces == ["intel_npu"]


def test_xdna_profile_never_claims_the_npu(profiles: dict[str, Profile]) -> None:
    xdna = profiles["xdna"]
    assert xdna.backend == "onnx" and xdna.fallback == ["numpy"]
    assert [p["name"] for p in xdna.backend_options["encoder"]["providers"]] == [
        "CPUExecutionProvider"
    ]
    assert "INT8" in xdna.notes[0] and "CNN" in xdna.notes[0]


# --- choosing on fake machines --------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (fakehw.strix_laptop, "xdna2"),
        (fakehw.strix_halo_laptop, "xdna2"),
        (fakehw.krackan_laptop, "xdna2"),
        (fakehw.phoenix_laptop, "xdna"),
        (fakehw.lunar_lake_laptop, "intel-npu"),
        (fakehw.apple_m3, "apple-silicon"),
        (fakehw.nvidia_server, "nvidia"),
        (fakehw.snapdragon_windows, "qualcomm-npu"),
        (fakehw.snapdragon_linux, "qualcomm-npu"),
        (fakehw.plain_linux, "cpu"),
        (fakehw.zen4_server_openvino, "cpu-bf16"),
        (fakehw.zen4_server_openvino_cc, "cpu"),
        (fakehw.old_xeon_openvino, "cpu"),
    ],
)
def test_each_machine_gets_its_profile(
    tmp_path: Path, profiles: dict[str, Profile], build, expected: str
) -> None:
    choice = choose_profile(profiles, run_probes(build(tmp_path)), all_available)
    assert choice.profile is not None and choice.profile.name == expected, choice.reasons
    assert choice.fallback_from is None
    assert set(choice.reasons) == BUILTIN - {expected}
    assert all(choice.reasons.values())
    assert choice.matching[0] == expected and choice.matching[-2:] == ["cpu", "numpy"]


def test_cpu_bf16_gives_way_where_the_cpu_profiles_kernels_build(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    """With a C compiler the cpu profile's own kernels beat OpenVINO's bf16 encoder, and
    detection says why cpu-bf16 was not taken."""
    choice = choose_profile(
        profiles, run_probes(fakehw.zen4_server_openvino_cc(tmp_path)), all_available
    )
    assert choice.require().name == "cpu"
    why = str(choice.reasons["cpu-bf16"])
    assert "c_compiler = True, needs False" in why and "/usr/bin/cc" in why


def test_phoenix_shows_the_xdna_note(tmp_path: Path, profiles: dict[str, Profile]) -> None:
    choice = choose_profile(profiles, run_probes(fakehw.phoenix_laptop(tmp_path)), all_available)
    assert choice.require().name == "xdna"
    assert any("only INT8 CNN models" in note for note in choice.require().notes)
    assert choice.reasons["xdna2"] == [
        "no AMD XDNA2 NPU: amd_npu reports generation = 'xdna', needs 'xdna2'"
    ]


def test_unavailable_backend_uses_the_fallback(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    report = run_probes(fakehw.strix_laptop(tmp_path))
    choice = choose_profile(profiles, report, unavailable("onnx"))
    # the cpu profile runs on onnx too, so the chain goes on to numpy
    assert choice.require().name == "numpy" and choice.fallback_from == "xdna2"
    assert choice.reasons["xdna2"] == [
        "matches, but backend 'onnx' is unavailable: onnx is not installed"
    ]


@pytest.mark.parametrize(
    ("build", "backend", "skipped", "chosen"),
    [
        (fakehw.apple_m3, "mlx", "apple-silicon", "cpu"),
        (fakehw.nvidia_server, "onnx", "nvidia", "numpy"),
    ],
)
def test_fallback_on_other_machines(
    tmp_path: Path, profiles: dict[str, Profile], build, backend, skipped, chosen
) -> None:
    choice = choose_profile(profiles, run_probes(build(tmp_path)), unavailable(backend))
    assert choice.require().name == chosen and choice.fallback_from == skipped
    assert "unavailable" in choice.reasons[skipped][0]


def test_strix_without_ryzen_ai_software_explains(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    report = run_probes(fakehw.strix_laptop(tmp_path, ryzen_ai=False))
    choice = choose_profile(profiles, report, all_available)
    assert choice.require().name == "cpu"
    [reason] = choice.reasons["xdna2"]
    assert reason.startswith(
        "no VitisAI execution provider (Ryzen AI Software): onnxruntime "
        "providers lack VitisAIExecutionProvider (found: CPUExecutionProvider)"
    )


def test_strix_without_driver_explains(tmp_path: Path, profiles: dict[str, Profile]) -> None:
    choice = choose_profile(
        profiles, run_probes(fakehw.strix_laptop(tmp_path, driver=False)), all_available
    )
    assert choice.require().name == "cpu"
    assert choice.reasons["xdna2"][0].startswith(
        "no AMD XDNA2 NPU: amd_npu found nothing (driver not loaded"
    )


def test_apple_without_mlx_explains_with_the_detail_reason(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    choice = choose_profile(
        profiles, run_probes(fakehw.apple_m3(tmp_path, rosetta=True)), all_available
    )
    assert choice.require().name == "cpu"
    reasons = choice.reasons["apple-silicon"]
    assert any("rosetta = True, needs False" in r and "Rosetta 2" in r for r in reasons)
    assert any(
        "no MLX with a Metal GPU: mlx found nothing" in r and "mlx is not installed" in r
        for r in reasons
    )


def test_this_machine_chooses_cpu_and_explains_every_other_profile(
    profiles: dict[str, Profile],
) -> None:
    report = run_probes()
    accelerators = [
        n
        for n in ("apple", "amd_npu", "intel_npu", "qualcomm_npu", "nvidia")
        if (f := report.get(n)) is not None and f.present
    ]
    if accelerators:
        pytest.skip(f"this machine has an accelerator: {accelerators}")
    choice = choose_profile(profiles, report, all_available)
    assert choice.require().name == "cpu"
    assert set(choice.reasons) == BUILTIN - {"cpu"}
    assert choice.reasons.pop("numpy") == ["matches, but cpu ranks higher (priority 0 > -10)"]
    for name, reasons in choice.reasons.items():
        assert reasons and all(r.startswith("no ") for r in reasons), (name, reasons)


def test_no_match_at_all(profiles: dict[str, Profile]) -> None:
    only_npu = {"xdna2": profiles["xdna2"]}
    choice = choose_profile(only_npu, HardwareReport({}), all_available)
    assert choice.profile is None and choice.matching == []
    with pytest.raises(
        ProfileError, match="no profile can run on this machine.*xdna2: no AMD XDNA2 NPU"
    ):
        choice.require()


def test_equal_priority_is_broken_by_name_and_unneeded_profiles_say_why() -> None:
    a = Profile(name="a", description="", priority=5, backend="cpu")
    b = Profile(name="b", description="", priority=5, backend="cpu")
    low = Profile(name="low", description="", priority=1, backend="cpu")
    choice = choose_profile({"b": b, "low": low, "a": a}, HardwareReport({}), all_available)
    assert choice.require().name == "a" and choice.matching == ["a", "b", "low"]
    assert choice.reasons["b"] == ["matches, but a comes first (same priority, by name)"]
    assert choice.reasons["low"] == ["matches, but a ranks higher (priority 5 > 1)"]


def test_backend_availability_is_asked_once_per_backend(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    asked: list[str] = []

    def check(backend: str) -> tuple[bool, str]:
        asked.append(backend)
        return backend == "cpu", "nope"

    choose_profile(profiles, run_probes(fakehw.strix_laptop(tmp_path)), check)
    assert sorted(asked) == ["cpu", "onnx"]


# --- rules ----------------------------------------------------------------------------


def report_of(**details) -> HardwareReport:
    return HardwareReport(
        {"cpu": Finding("cpu", True, details), "gone": Finding("gone", False, {}, "not here")}
    )


def rule_profile(**rule) -> Profile:
    return Profile.model_validate(
        {"name": "p", "description": "", "backend": "cpu", "match": [rule]}
    )


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"probe": "cpu", "has": {"flags": ["avx2"]}}, None),
        (
            {"probe": "cpu", "has": {"flags": ["avx2", "amx_bf16"]}, "label": "AMX CPU"},
            "no AMX CPU: cpu flags lack amx_bf16 (found: avx2, fma)",
        ),
        ({"probe": "cpu", "where": {"vendor": ["GenuineIntel", "AuthenticAMD"]}}, None),
        (
            {"probe": "cpu", "where": {"vendor": "GenuineIntel"}},
            "no cpu: cpu reports vendor = 'AuthenticAMD', needs 'GenuineIntel'",
        ),
        ({"probe": "cpu", "where": {"cores": 1}}, "no cpu: cpu reports cores = True, needs 1"),
        ({"probe": "cpu", "where": {"model": "x"}}, "no cpu: cpu reports no model"),
        ({"probe": "gone", "label": "thing"}, "no thing: gone found nothing (not here)"),
        ({"probe": "gone", "present": False}, None),
        (
            {"probe": "cpu", "present": False, "label": "a CPU"},
            "a CPU must be absent, but cpu found it",
        ),
        ({"probe": "missing"}, "no missing: the missing probe did not run"),
    ],
)
def test_rules(rule: dict, reason: str | None) -> None:
    result = evaluate(
        rule_profile(**rule), report_of(vendor="AuthenticAMD", flags=["avx2", "fma"], cores=True)
    )
    assert result.matches is (reason is None)
    assert result.reasons == ([] if reason is None else [reason])


# --- bad profile files ----------------------------------------------------------------

GOOD = 'name = "fast"\ndescription = "d"\nbackend = "onnx"\n'


def write_profile(folder: Path, filename: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + 'colour = "red"\n', "colour: unknown field"),
        (GOOD + '[[match]]\nprobe = "cpu"\nwhen = { a = 1 }\n', "match[0].when: unknown field"),
        (GOOD + '[batcher]\nbatch_size = 2\nmode = "x"\n', "batcher.mode: unknown field"),
        (GOOD + 'priority = "high"\n', "priority: Input should be a valid integer (got 'high')"),
        (
            GOOD + "[batcher]\nbatch_size = 0\n",
            "batcher.batch_size: Input should be greater than or equal to 1",
        ),
        (
            GOOD + '[batcher]\ndecoder = "parallel"\n',
            "batcher.decoder: Input should be 'continuous', 'batched' or 'sequential'",
        ),
        (GOOD + 'fallback = "cpu"\n', "fallback: Input should be a valid list (got 'cpu')"),
        (GOOD + 'fallback = ["fast"]\n', "fallback: profile 'fast' cannot fall back to itself"),
        ('description = "d"\nbackend = "onnx"\n', "name: required field is missing"),
        (GOOD + "priority = \n", "invalid TOML"),
        (
            GOOD + '[[match]]\nprobe = "cpu"\nwhere = { generation = 1.5 }\n',
            "match[0].where: generation: must be a string, integer, boolean or a non-empty list "
            "of them (got 1.5)",
        ),
    ],
)
def test_bad_profile_files_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write_profile(tmp_path, "fast.toml", text)
    with pytest.raises(ProfileError) as error:
        load_profile(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_duplicate_names_across_directories(tmp_path: Path) -> None:
    first = write_profile(tmp_path / "a", "fast.toml", GOOD)
    second = write_profile(tmp_path / "b", "also-fast.toml", GOOD)
    with pytest.raises(ProfileError) as error:
        load_profiles([tmp_path / "a", tmp_path / "b"])
    message = str(error.value)
    assert (
        message.startswith(f"{second}: name: duplicate profile name 'fast'")
        and str(first) in message
    )


def test_unknown_fallback_and_missing_directory(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "fast.toml", GOOD + 'fallback = ["gpu"]\n')
    with pytest.raises(ProfileError, match=r"fast\.toml: fallback: unknown profile 'gpu'"):
        load_profiles([tmp_path])
    with pytest.raises(ProfileError, match="profile directory does not exist"):
        load_profiles([tmp_path / "nowhere"])
    assert str(path).endswith("fast.toml")


def test_plugin_directories_add_profiles(tmp_path: Path) -> None:
    write_profile(
        tmp_path,
        "fast.toml",
        GOOD + 'priority = 90\nfallback = ["cpu"]\n[[match]]\nprobe = "cpu"\n',
    )
    loaded = load_profiles([builtin_profiles_dir(), tmp_path])
    assert set(loaded) == BUILTIN | {"fast"}
    assert find_profile(loaded, "fast").priority == 90
    with pytest.raises(
        ProfileError, match="unknown profile 'slow'; known profiles: apple-silicon, cpu"
    ):
        find_profile(loaded, "slow")
