"""Plugins: real third-party packages installed in a test, every hook documented and exercised."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config.settings import Settings
from runtime.plugins import Plugins, hookspecs
from tests.conftest import eval_file

PLUGINS_SRC = Path(__file__).parent / "plugins"
HOOKS = sorted(
    n
    for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(f, "whisper_runtime_spec")
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip-install the example and the broken plugin into a private folder (not the venv)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGINS_SRC / "example_backend"),
            str(PLUGINS_SRC / "broken_plugin"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


@pytest.fixture
def with_plugins(installed, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.delenv("RUNTIME_BLOCK_PLUGINS", raising=False)
    return installed


@pytest.fixture
def marker_root(tmp_path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "example-marker").write_text("yes")
    return tmp_path


def test_every_hook_is_documented():
    assert HOOKS == [
        "add_profile_dirs",
        "register_backends",
        "register_clusters",
        "register_model_readers",
        "register_probes",
        "register_writers",
    ]
    for name in HOOKS:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.split()) >= 8, f"hook {name} needs a docstring stating its contract"


def test_example_plugin_implements_every_hook(with_plugins):
    import example_backend.plugin as plugin

    implemented = sorted(
        n for n in HOOKS if hasattr(getattr(plugin, n, None), "whisper_runtime_impl")
    )
    assert implemented == HOOKS


def test_third_party_contributions_reach_the_core(with_plugins, marker_root, tmp_path):
    plugins = Plugins()
    assert "example" in plugins.backends() and "cpu" in plugins.backends()
    assert "example_marker" in {
        getattr(p, "probe_name", p.__name__.removeprefix("probe_")) for p in plugins.probes()
    }
    assert any(d.name == "profiles" and "example_backend" in str(d) for d in plugins.profile_dirs())
    assert "shout" in plugins.writers() and "srt" in plugins.writers()
    assert [r.name for r in plugins.model_readers()][-1] == "alias"


def test_a_cluster_plugin_runs_the_local_job(with_plugins, tmp_path):
    """``transcribe_job(cluster=...)``: a cluster replaces where transcriptions run; outputs,
    resume and the summary stay the local job's."""
    from runtime.job import transcribe_job

    jfk = str(eval_file("jfk.flac"))
    summary = transcribe_job([jfk], tmp_path, cluster="inline")
    assert len(summary.done) == 1 and summary.failed == []
    assert "ask not what your country" in (tmp_path / "jfk.txt").read_text().lower()
    again = transcribe_job([jfk], tmp_path, cluster="inline")
    assert (len(again.done), len(again.skipped)) == (0, 1)


def test_a_missing_cluster_plugin_fails_in_one_line(with_plugins):
    from runtime.cluster import ClusterUnavailableError, find_cluster

    with pytest.raises(ClusterUnavailableError, match="no cluster plugin 'slurm'.*inline"):
        find_cluster(Plugins().clusters(), "slurm")


def test_broken_plugin_is_listed_with_its_error(with_plugins):
    plugins = Plugins()
    broken = [p for p in plugins.info if p.name == "broken"]
    assert broken and "broken on purpose" in broken[0].error
    assert "cpu" in plugins.backends()  # the others still load


def test_block_plugins_by_name(with_plugins, monkeypatch):
    monkeypatch.setenv("RUNTIME_BLOCK_PLUGINS", "broken, example")
    plugins = Plugins()
    assert {p.name for p in plugins.info if p.blocked} == {"broken", "example"}
    assert "example" not in plugins.backends() and not plugins.errors


def test_detect_cli_lists_plugin_backend_and_error(with_plugins, marker_root):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(with_plugins), *sys.path]),
        "RUNTIME_HARDWARE_ROOT": str(marker_root),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "detect", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["backends"]["example"]["available"]
    assert data["profiles"]["example"]["matches"]
    assert data["chosen"]["profile"] == "cpu"  # higher priority; example is selectable by name
    assert any(p["name"] == "broken" and "broken on purpose" in p["error"] for p in data["plugins"])
    text = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "detect"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout
    assert "example" in text and "broken on purpose" in text


def test_select_third_party_profile_and_writer(with_plugins, marker_root, tmp_path):
    from runtime.api import Runtime

    jfk = eval_file("jfk.flac")
    rt = Runtime(profile="example", settings=Settings(hardware_root=marker_root))
    result = rt.transcribe(jfk)
    assert result.run.backend == "example" and result.run.profile == "example"
    assert "ASK NOT WHAT YOUR COUNTRY" in rt.plugins.writers()["shout"]().to_string(result)
    alias = tmp_path / "tiny.alias"
    alias.write_text("tiny.en")
    assert Runtime(alias, backend="example").session.model.dims.n_text_layer == 4


def test_profile_without_its_hardware_falls_back(with_plugins, tmp_path):
    from runtime.api import Runtime

    rt = Runtime(profile="example", settings=Settings(hardware_root=tmp_path))
    assert rt.selection.profile.name == "cpu"
    assert "example marker file" in rt.selection.fallback_note
