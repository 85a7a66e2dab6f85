"""The fuzzing suite's quick part, run in CI with fixed seeds (about 70 s here).

255 generated audio inputs (the JFK clip in 44 container/codec pairs, 24 of them cut in half,
65 lying headers, 33 odd signals: NaN, inf, x 1e6, rates from 1 Hz to 2^31, 1 to 64 channels,
0 samples to 10 minutes; 25 arrays of every type and shape, 24 files that are not audio or are
renamed, 40 random mutations of real files) through audio intake (each file as a path, bytes
and a file object), the Python API (44 of them), `runtime transcribe` (100, in one run) and
`runtime serve` (49 uploads, 60 malformed or broken requests, slow and vanishing clients, a
flood of 12 past --max-queue 4: about 126 requests), each answer checked against the
properties of tests/fuzz_checks.py. The long part: `python tools/fuzz.py` (numbers in the
README).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import eval_file
from tests.fuzz_audio import ANY, ERROR, SPEECH, Case, all_cases, encode, encoded, speech, wav_bytes
from tests.fuzz_checks import Tally, check_api, check_cli, check_expectation, check_intake
from tests.fuzz_http import (
    check_clients,
    check_flood,
    check_malformed,
    check_server_after,
    check_upload,
    malformed_requests,
)
from tests.liveserver import LiveServer

SEED = 20261204


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    eval_file("jfk.flac")
    return all_cases(SEED, mutations=40)


def sample(cases: list[Case], family: str, every: int) -> list[Case]:
    return [c for c in cases if c.family == family][::every]


def assert_holds(tally: Tally) -> None:
    print(tally.summary())
    assert not tally.violations, "\n".join(tally.violations[:30])


def test_intake(cases, tmp_path):
    """load_audio on each file as a path, bytes and a file object, and on each array."""
    tally = Tally()
    for k, case in enumerate(cases):
        path = None
        if not case.is_array:
            path = tmp_path / f"c{k}" / case.filename.replace("/", "_")
            path.parent.mkdir()
            path.write_bytes(case.data)
        check_intake(tally, case, path)
    assert len(tally.inputs) >= 250 and len({c.family for c in cases}) == 7
    assert_holds(tally)


def test_api(cases):
    """Runtime.transcribe_many over arrays and bytes: results or input errors, right text."""
    from runtime.api import Runtime

    chosen = sample(cases, "arrays", 1) + [
        Case(c.name + " (bytes)", c.data, c.filename, c.expect, c.error, c.family)
        for c in sample(cases, "lies", 6) + sample(cases, "not audio", 3)
    ]
    tally = Tally()
    check_api(tally, Runtime(), chosen, timeout_s=240)
    assert_holds(tally)


def cli_cases(cases: list[Case]) -> list[Case]:
    return (
        sample(cases, "formats", 4)
        + sample(cases, "truncated", 5)
        + sample(cases, "signals", 1)
        + sample(cases, "lies", 4)
        + sample(cases, "not audio", 1)
        + sample(cases, "mutations", 4)
    )


def test_cli(cases, tmp_path):
    """Every chosen file in one `runtime transcribe -f json -o` run."""
    tally = Tally()
    check_cli(tally, cli_cases(cases), tmp_path, timeout_s=300)
    assert len(tally.inputs) >= 80
    assert_holds(tally)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-uploads")
    srv = LiveServer(
        "--max-queue",
        "4",
        "--max-upload-mb",
        "8",
        log_path=tmp_path_factory.mktemp("fuzz-log") / "server.log",
        env={"TMPDIR": str(tmp)},
    )
    yield srv, tmp
    srv.stop()


def test_http(cases, server):
    """Uploads (four clients at a time), malformed requests, slow and vanishing clients and a
    flood past --max-queue 4; then the server: healthy, no 5xx but 503, no upload left, no
    traceback in its log."""
    srv, tmp = server
    tally = Tally()
    uploads = (
        sample(cases, "formats", 8)
        + sample(cases, "truncated", 6)
        + sample(cases, "signals", 3)
        + sample(cases, "lies", 6)
        + sample(cases, "not audio", 2)
        + sample(cases, "mutations", 8)
    )
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda case: check_upload(tally, srv, case, limit_bytes=8_000_000), uploads))
    short = encode(speech()[: 4 * 16000], 16000, "flac", "flac")  # "And so my fellow Americans"
    for raw in malformed_requests(np.random.default_rng(SEED), short, 40):
        check_malformed(tally, srv, raw)
    check_clients(tally, srv, encoded("flac", "flac", 44100), wav_bytes(np.tile(speech(), 4)))
    check_flood(tally, srv, Case("flood", short, "short.flac", ANY), clients=12)
    check_server_after(tally, srv, tmp)
    assert len(tally.inputs) >= 45 and tally.requests >= 120
    assert_holds(tally)


def test_the_properties_can_fail(tmp_path):
    """A NaN file said to be speech, silence said to be an error and a hallucination are caught."""
    path = tmp_path / "nan.wav"
    path.write_bytes(wav_bytes(np.full(16000, np.nan), tag=3, bits=32))
    tally = Tally()
    check_intake(tally, Case("NaN said to be speech", path.read_bytes(), "nan.wav", SPEECH), path)
    check_intake(
        tally, Case("silence said to be an error", np.zeros(3, np.float32), "<array>", ERROR), None
    )
    check_expectation(tally, "cli", Case("speech", b"", "a.wav", SPEECH), "yeah no.", None)
    assert len(tally.violations) == 3, tally.violations
