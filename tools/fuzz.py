"""The fuzzing suite's long part: thousands of generated inputs through every layer, by hand.

    python tools/fuzz.py                                   # seed 1, 600 mutations, 300 malformed
    python tools/fuzz.py --seed 7 --mutations 2000 --malformed 1000 --long
    python tools/fuzz.py --layers intake,http              # some layers only

The same generators and properties as the CI part (tests/test_fuzz.py), at a larger scale and
with other seeds: every audio case through load_audio (path, bytes, file object), the Python
API (transcribe_many, arrays and bytes), one `runtime transcribe -f json -o` over every file
and a `runtime serve` (--max-queue 4) taking every file as an upload (eight clients at a time),
the malformed requests, slow and vanishing clients and a flood. ``--long`` adds hour-long
inputs (1 h and 3 h of silence, 1 h of speech). Prints a table per layer and every violation;
exits 1 if there is one.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fuzz_audio import (
    ANY,
    EMPTY,
    RATE,
    SPEECH,
    Case,
    all_cases,
    encode,
    encoded,  # noqa: E402
    speech,
    wav_bytes,
)
from tests.fuzz_checks import Tally, check_api, check_cli, check_intake  # noqa: E402
from tests.fuzz_http import (
    check_clients,
    check_flood,
    check_malformed,  # noqa: E402
    check_server_after,
    check_upload,
    malformed_requests,
)
from tests.liveserver import LiveServer  # noqa: E402

UPLOAD_LIMIT_MB = 25


def flac_of(chunk: np.ndarray, repeats: int) -> bytes:
    """``chunk`` (16 kHz float) ``repeats`` times as FLAC, encoded a chunk at a time."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=RATE)
        stream.layout = "mono"
        pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)[None]
        for k in range(repeats + 1):
            frame = None
            if k < repeats:
                frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
                frame.sample_rate, frame.pts = RATE, k * pcm.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
    return buffer.getvalue()


def long_cases() -> list[Case]:
    """Hours: the clip over and over for one hour, and one and three hours of silence."""
    clip = speech()
    return [
        Case(
            "1 h of speech (the clip 327 times)",
            flac_of(clip, 3600 * RATE // len(clip)),
            "hour.flac",
            SPEECH,
            family="signals",
        ),
        *[
            Case(
                f"{h} h of digital silence",
                flac_of(np.zeros(60 * RATE, np.float32), 60 * h),
                f"silence{h}h.flac",
                EMPTY,
                family="signals",
            )
            for h in (1, 3)
        ],
    ]


def run_intake(cases: list[Case], work: Path) -> Tally:
    tally = Tally()
    for k, case in enumerate(cases):
        path = None
        if not case.is_array:
            path = work / f"c{k}" / case.filename.replace("/", "_")
            path.parent.mkdir(parents=True)
            path.write_bytes(case.data)
        check_intake(tally, case, path)
    return tally


def run_api(cases: list[Case]) -> Tally:
    from runtime.api import Runtime

    tally = Tally()
    chosen = [c for c in cases if c.is_array] + [c for c in cases if not c.is_array][::3]
    check_api(tally, Runtime(), chosen, timeout_s=3600)
    return tally


def run_cli(cases: list[Case], work: Path) -> Tally:
    tally = Tally()
    check_cli(tally, [c for c in cases if not c.is_array], work, timeout_s=7200)
    return tally


def run_http(cases: list[Case], malformed: int, seed: int, work: Path) -> Tally:
    tally = Tally()
    uploads = work / "uploads"
    uploads.mkdir()
    server = LiveServer(
        "--max-queue",
        "4",
        "--max-upload-mb",
        str(UPLOAD_LIMIT_MB),
        log_path=work / "server.log",
        env={"TMPDIR": str(uploads)},
    )
    try:
        files = [c for c in cases if not c.is_array]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda case: check_upload(
                        tally, server, case, UPLOAD_LIMIT_MB * 10**6, timeout_s=1800
                    ),
                    files,
                )
            )
        short = encode(speech()[: 4 * RATE], RATE, "flac", "flac")
        rng = np.random.default_rng(seed)
        for raw in malformed_requests(rng, short, malformed):
            check_malformed(tally, server, raw)
        for _ in range(3):
            check_clients(
                tally, server, encoded("flac", "flac", 44100), wav_bytes(np.tile(speech(), 4))
            )
            check_flood(tally, server, Case("flood", short, "short.flac", ANY), clients=12)
        check_server_after(tally, server, uploads)
    finally:
        server.stop()
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutations", type=int, default=600, help="random damages of real files")
    ap.add_argument("--malformed", type=int, default=300, help="random malformed request bodies")
    ap.add_argument("--long", action="store_true", help="add inputs of 1 and 3 hours")
    ap.add_argument("--layers", default="intake,api,cli,http")
    ns = ap.parse_args()
    logging.disable(logging.WARNING)  # the API layer's warnings; the CLI and server keep theirs
    t0 = time.monotonic()
    cases = all_cases(ns.seed, ns.mutations, long=False) + (long_cases() if ns.long else [])
    print(
        f"{len(cases)} audio inputs generated in {time.monotonic() - t0:.0f} s (seed {ns.seed})",
        flush=True,
    )
    layers = ns.layers.split(",")
    results: dict[str, tuple[Tally, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        work = Path(tmp)
        runs = {
            "intake": lambda: run_intake(cases, work / "intake"),
            "api": lambda: run_api(cases),
            "cli": lambda: run_cli(cases, work / "cli"),
            "http": lambda: run_http(cases, ns.malformed, ns.seed, work / "http"),
        }
        for layer in layers:
            (work / layer).mkdir()
            t = time.monotonic()
            results[layer] = (runs[layer](), time.monotonic() - t)
            print(f"{layer}: {results[layer][0].summary()} ({results[layer][1]:.0f} s)", flush=True)
    print(
        "\n| layer | inputs | requests | properties | checks | violations | wall s |\n"
        "|---|---|---|---|---|---|---|"
    )
    properties = set()
    for layer, (tally, seconds) in results.items():
        properties |= set(tally.checks)
        print(
            f"| {layer} | {len(tally.inputs)} | {tally.requests} | {len(tally.checks)} | "
            f"{sum(tally.checks.values())} | {len(tally.violations)} | {seconds:.0f} |"
        )
    violations = [v for tally, _ in results.values() for v in tally.violations]
    print(
        f"\n{len(cases)} inputs, {sum(t.requests for t, _ in results.values())} requests, "
        f"{len(properties)} properties, {len(violations)} violations"
    )
    for v in violations:
        print("  " + v)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
