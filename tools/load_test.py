"""Load test for `runtime serve`: N concurrent clients replay evaluation files for a bounded time.

    python tools/load_test.py --clients 16 --duration 120            # starts a cpu-profile server
    python tools/load_test.py --url http://127.0.0.1:8000 --clients 4 --duration 30
    python tools/load_test.py --compare --clients 16 --duration 120  # 1 vs N clients, batching
                                                                     # across requests on and off

Each client holds one keep-alive connection and posts the files of ../shared/eval/librispeech
(shuffled, round-robin over all clients) to /v1/audio/transcriptions until the time is up; the
requests in flight then finish and count. Reported per run: requests done, errors by status,
lost requests (sent but never answered), throughput in audio seconds per second of wall time,
p50/p95 latency, and the engine's mean batch size from /stats. The machine is shared: say so
next to any number.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval" / "librispeech"


@dataclass(frozen=True)
class AudioFile:
    name: str
    data: bytes
    seconds: float


@dataclass
class RunResult:
    label: str
    clients: int
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    lost: int = 0  # sent, never answered (connection error)
    mean_batch_size: float | None = None
    busy_s: float = 0.0  # the engine worker's time in batches (encoder + decoder) during the run

    @property
    def done(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s else 0.0

    def row(self) -> str:
        p50, p95 = np.percentile(self.latencies, [50, 95]) if self.latencies else (0.0, 0.0)
        errors = {k: v for k, v in self.statuses.items() if k != 200}
        batch = f"{self.mean_batch_size:.2f}" if self.mean_batch_size is not None else "-"
        busy = 100 * self.busy_s / self.wall_s if self.wall_s else 0.0
        return (
            f"| {self.label} | {self.clients} | {self.done} | {errors or 0} | {self.lost} | "
            f"{self.audio_s:.0f} | {self.wall_s:.1f} | {self.throughput:.2f} | {p50:.2f} | "
            f"{p95:.2f} | {batch} | {busy:.0f}% |"
        )


HEADER = (
    "| server | clients | requests done | errors | lost | audio s | wall s | "
    "audio s / s | p50 s | p95 s | mean batch | engine busy |\n" + "|---" * 12 + "|"
)


def load_files(folder: Path, limit: int | None) -> list[AudioFile]:
    from runtime.audio.decode import audio_duration, load_audio

    paths = sorted(folder.glob("*.flac"))[:limit]
    if not paths:
        sys.exit(f"no .flac files in {folder} (../shared/eval beside the repo?)")
    files = []
    for p in paths:
        seconds = audio_duration(p) or len(load_audio(p)) / 16000
        files.append(AudioFile(p.name, p.read_bytes(), seconds))
    return files


def encode_form(audio: AudioFile, model: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{audio.name}"\r\nContent-Type: audio/flac\r\n\r\n'
    ).encode()
    return (
        head + audio.data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


class Client(threading.Thread):
    """One client: posts the next file, waits for the answer, repeats until the deadline."""

    def __init__(
        self,
        url: str,
        queue: FileQueue,
        deadline: float,
        result: RunResult,
        lock: threading.Lock,
        api_key: str | None,
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.queue, self.deadline = urlparse(url), queue, deadline
        self.result, self.lock, self.api_key = result, lock, api_key

    def run(self) -> None:
        conn = None
        while time.monotonic() < self.deadline:
            audio = self.queue.next()
            body, content_type = encode_form(audio, "whisper-1")
            headers = {"Content-Type": content_type}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            conn = conn or http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=600)
            t = time.perf_counter()
            with self.lock:
                self.result.sent += 1
            try:
                conn.request("POST", "/v1/audio/transcriptions", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                with self.lock:
                    self.result.lost += 1
                continue
            with self.lock:
                self.result.statuses[status] = self.result.statuses.get(status, 0) + 1
                if status == 200:
                    self.result.latencies.append(time.perf_counter() - t)
                    self.result.audio_s += audio.seconds
        if conn is not None:
            conn.close()


class FileQueue:
    """Files in a shuffled cycle shared by all clients."""

    def __init__(self, files: list[AudioFile], seed: int = 0) -> None:
        self.files = list(files)
        random.Random(seed).shuffle(self.files)
        self.i = 0
        self.lock = threading.Lock()

    def next(self) -> AudioFile:
        with self.lock:
            audio = self.files[self.i % len(self.files)]
            self.i += 1
            return audio


def get_json(url: str, path: str, api_key: str | None) -> dict:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def engine_counts(url: str, api_key: str | None) -> tuple[int, float, float]:
    """(batches, rows, busy seconds) summed over the served models, from /stats."""
    engines = [m["engine"] for m in get_json(url, "/stats", api_key)["models"].values()]
    return (
        sum(e["batches"] for e in engines),
        sum(e["batches"] * e["mean_batch_size"] for e in engines),
        sum(e["busy_seconds"] for e in engines),
    )


def run_load(
    url: str, files: list[AudioFile], clients: int, duration: float, label: str, api_key: str | None
) -> RunResult:
    result, lock = RunResult(label, clients), threading.Lock()
    queue = FileQueue(files, seed=clients)
    b0, r0, busy0 = engine_counts(url, api_key)
    t0 = time.monotonic()
    threads = [Client(url, queue, t0 + duration, result, lock, api_key) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.monotonic() - t0
    b1, r1, busy1 = engine_counts(url, api_key)
    result.mean_batch_size = (r1 - r0) / (b1 - b0) if b1 > b0 else None
    result.busy_s = busy1 - busy0
    return result


class ServerProcess:
    """``runtime serve`` on a free port, stopped with SIGTERM (graceful)."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "ab")  # noqa: SIM115 - the server writes it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "serve", "--port", str(port), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=os.environ.copy(),
        )
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"server exited with {self.proc.returncode}; see {log_path}")
            try:
                get_json(self.url, "/health", None)
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    sys.exit(f"server did not start; see {log_path}")
                time.sleep(0.3)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self.log.close()


def server_args(ns: argparse.Namespace, cross_request: bool) -> list[str]:
    args = ["--profile", ns.profile, "--model", ns.model, "--max-queue", str(max(64, ns.clients))]
    if ns.batch_size:
        args += ["--batch-size", str(ns.batch_size)]
    if ns.max_wait_ms is not None:
        args += ["--max-wait-ms", str(ns.max_wait_ms)]
    return args + ([] if cross_request else ["--no-cross-request"])


def warm_up(url: str, audio: AudioFile, api_key: str | None) -> None:
    """One request before measuring (first-call allocations), not counted."""
    u = urlparse(url)
    body, content_type = encode_form(audio, "whisper-1")
    headers = {
        "Content-Type": content_type,
        **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
    }
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    try:
        conn.request("POST", "/v1/audio/transcriptions", body=body, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            sys.exit(f"warm-up request failed: {response.status} {response.read()[:300]!r}")
        response.read()
    finally:
        conn.close()


def measure(
    ns: argparse.Namespace, files: list[AudioFile], url: str, label: str, client_counts: list[int]
) -> list[RunResult]:
    warm_up(url, files[0], ns.api_key)
    results = []
    for n in client_counts:
        results.append(run_load(url, files, n, ns.duration, label, ns.api_key))
        print(results[-1].row(), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="an already running server (default: start one)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load per run")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="1 client and N clients, cross-request batching on and off",
    )
    ap.add_argument(
        "--no-cross-request",
        action="store_true",
        help="start the server with cross-request batching off",
    )
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--max-wait-ms", type=float, default=None)
    ap.add_argument("--api-key", default=None, help="for --url servers that need one")
    ap.add_argument("--files", type=Path, default=EVAL, help="folder of .flac files to replay")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files")
    ap.add_argument("--log", type=Path, default=Path("/tmp/load_test_server.log"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ns = ap.parse_args()
    sys.path.insert(0, str(REPO))
    files = load_files(ns.files, ns.limit)
    print(
        f"{len(files)} files, {sum(f.seconds for f in files):.0f} s of audio, "
        f"{ns.duration:g} s per run, load average {os.getloadavg()[0]:.2f} at start\n"
    )
    print(HEADER, flush=True)
    results: list[RunResult] = []
    if ns.url:
        results += measure(ns, files, ns.url, "given", [ns.clients])
    else:
        modes = [True, False] if ns.compare else [not ns.no_cross_request]
        for cross in modes:
            server = ServerProcess(server_args(ns, cross), ns.log)
            try:
                counts = [1, ns.clients] if ns.compare else [ns.clients]
                results += measure(
                    ns, files, server.url, f"cross-request {'on' if cross else 'off'}", counts
                )
            finally:
                server.stop()
    if ns.compare:
        for label in ("cross-request on", "cross-request off"):
            one, many = [r for r in results if r.label == label]
            print(
                f"\n{label}: {ns.clients} clients / 1 client = "
                f"{many.throughput / one.throughput:.2f}x throughput",
                end="",
            )
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    if ns.json:
        ns.json.write_text(
            json.dumps([r.__dict__ | {"throughput": r.throughput} for r in results], indent=1)
        )


if __name__ == "__main__":
    main()
