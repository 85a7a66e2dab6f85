"""``transcribe_job(..., cluster="ray")`` on a local Ray instance: the local job's outputs,
resume, a failing input reported, and a worker killed mid-job losing nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import eval_file

pytest.importorskip("ray", reason="Ray is the ray extra: pip install '.[ray]'")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WORKER = "MapBatches(Transcriber)"  # in a Ray Data actor's process title


def _utterances(n: int) -> list[Path]:
    folder = eval_file("librispeech")
    return sorted(folder.glob("*.flac"))[:n]


def _texts(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.rglob("*.txt"))}


@pytest.fixture(scope="module")
def runtime():
    from runtime.api import Runtime

    return Runtime("tiny.en").load()  # by name: the workers load it by name too


def test_ray_job_writes_what_the_local_job_writes(ray_instance, runtime, tmp_path):
    from runtime.job import transcribe_job

    files = [str(p) for p in _utterances(6)]
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"not audio at all")
    local = transcribe_job(files, tmp_path / "local", formats=["txt", "json"], runtime=runtime)
    on_ray = transcribe_job(
        [*files, str(bad)],
        tmp_path / "ray",
        formats=["txt", "json"],
        runtime=runtime,
        cluster="ray",
        cluster_options={"files_per_task": 2},
    )
    assert len(local.done) == len(on_ray.done) == 6
    assert [source for source, _ in on_ray.failed] == [str(bad)]
    assert str(bad) in on_ray.failed[0][1]  # the reason names the input as it was given
    assert _texts(tmp_path / "ray") == _texts(tmp_path / "local")
    assert len(list((tmp_path / "ray").rglob("*.json"))) == 6
    assert not list((tmp_path / "ray").rglob("*.part"))

    again = transcribe_job(  # resume (the same inputs, so the same layout): only the bad one runs
        [*files, str(bad)],
        tmp_path / "ray",
        formats=["txt", "json"],
        runtime=runtime,
        cluster="ray",
    )
    assert (len(again.done), len(again.skipped), len(again.failed)) == (0, 6, 1)


def test_unknown_job_option_is_refused_in_one_line(ray_instance, runtime, tmp_path):
    from runtime.errors import RuntimeInputError
    from runtime.job import transcribe_job

    files = [str(p) for p in _utterances(2)]
    with pytest.raises(RuntimeInputError, match="--ray-option wrokers: unknown"):
        transcribe_job(
            files, tmp_path, runtime=runtime, cluster="ray", cluster_options={"wrokers": 2}
        )


def _worker_pids() -> set[int]:
    import psutil

    pids = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if WORKER in " ".join(proc.info["cmdline"] or ()):
            pids.add(proc.info["pid"])
    return pids


def test_a_worker_killed_mid_job_loses_nothing(ray_instance, runtime, tmp_path):
    """SIGKILL one actor's process once the first output is written: Ray restarts the actor and
    reruns its tasks; every input ends with exactly one output, none twice or half-written."""
    from runtime.job import transcribe_job

    files = _utterances(24)
    out = tmp_path / "out"
    summary: list = []
    job = threading.Thread(
        target=lambda: summary.append(
            transcribe_job(
                [str(p) for p in files],
                out,
                runtime=runtime,
                cluster="ray",
                cluster_options={"files_per_task": 2},
            )
        )
    )
    job.start()
    deadline = time.monotonic() + 120
    while not (list(out.glob("*.txt")) and _worker_pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    before = _worker_pids()
    assert before, "no Ray Data worker process was found to kill"
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    written_at_kill = len(list(out.glob("*.txt")))
    assert job.is_alive() and written_at_kill < len(files), "the job ended before the kill"
    seen = set(before)
    while job.is_alive() and time.monotonic() < deadline + 300:
        seen |= _worker_pids()
        time.sleep(0.1)
    assert not job.is_alive()
    assert seen - before, "no worker process replaced the killed one"

    (result,) = summary
    done = [str(item.source) for item, _ in result.done]
    assert sorted(done) == sorted(str(p) for p in files)  # each input once
    assert result.failed == [] and not result.interrupted
    outputs = sorted(p.name for p in out.iterdir())
    assert outputs == sorted(f"{p.stem}.txt" for p in files)  # no .part, no duplicates
    assert all(p.read_text().strip() for p in out.iterdir())


def test_cli_transcribe_on_a_new_local_instance(tmp_path):
    """``runtime transcribe INPUTS -o out --ray``: its own local instance, the usual summary."""
    import subprocess
    import sys

    files = [str(p) for p in _utterances(3)]
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "transcribe", *files, "-o", str(tmp_path), "--ray"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_ADDRESS": ""},  # not the tests' instance: a new one
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 done" in proc.stderr and "0 failed" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{Path(f).stem}.txt" for f in files
    )
