"""Soak test for `runtime serve`: many clients for a long time, good, bad and cancelled
requests mixed, the server's RSS sampled every second.

    python tools/soak.py                          # 16 clients, 10 minutes, a cpu-profile server
    python tools/soak.py --clients 16 --duration 600 --csv /tmp/soak_rss.csv
    python tools/soak.py --url http://127.0.0.1:8000 --pid 1234   # a running server

Each client loops until the time is up, drawing (from its own seeded generator) a good request
(a LibriSpeech utterance, 200 expected), a bad one (a truncated FLAC, NaN samples, a WAV with a
lying header or an unknown codec, text, a malformed multipart body, an unknown model, a bad
field: a 4xx expected) or a cancelled one (an upload whose client hangs up 0.05-1.5 s later).
Reported: requests by kind and status, lost requests (a good or bad request with no answer),
5xx, latency p50/p95 of the good requests per minute, the RSS curve (start, end, max, the
second half's peak against the first half's, the slope), and at the end the server's own
counters, temporary files left and tracebacks in its log. Exits 1 when a request was lost, a
5xx came, a file was left, or RSS grew beyond noise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.liveserver import multipart  # noqa: E402
from tools.load_test import (
    EVAL,
    AudioFile,
    ServerProcess,
    encode_form,
    get_json,  # noqa: E402
    load_files,
    warm_up,
)

RSS_NOISE_MB = 40.0  # allocator and arena wobble seen between idle minutes on this machine
WEIGHTS = {"good": 0.6, "bad": 0.25, "cancelled": 0.15}


@dataclass
class Outcome:
    kind: str
    name: str
    at: float  # seconds since the start
    status: int | None  # None: no answer (lost, or hung up on purpose)
    latency: float


@dataclass
class Soak:
    outcomes: list[Outcome] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


def bad_requests(files: list[AudioFile]) -> list[tuple[str, bytes, str]]:
    """(name, body, content type) of requests that must get a 4xx."""
    from runtime.audio.decode import load_audio
    from tests.fuzz_audio import wav_bytes

    flac = files[0].data
    speech = load_audio(flac)
    nan = speech.copy()
    nan[len(nan) // 2 :] = np.nan
    audio = {
        "truncated flac": (flac[: len(flac) // 2], "cut.flac"),
        "NaN samples": (wav_bytes(nan, tag=3, bits=32), "nan.wav"),
        "7-bit header": (wav_bytes(speech, header={"bits": 7}), "bits7.wav"),
        "unknown format tag": (wav_bytes(speech, header={"tag": 0x1234}), "tag.wav"),
        "text named .wav": (b"not a recording\n" * 100, "notes.wav"),
    }
    requests = [
        (name, *multipart([("file", data, filename), ("model", "whisper-1", None)]))
        for name, (data, filename) in audio.items()
    ]
    body, ctype = multipart([("file", flac, "a.flac"), ("model", "whisper-1", None)])
    requests += [
        ("malformed multipart", body[: len(body) // 3], ctype),
        ("unknown model", *multipart([("file", flac, "a.flac"), ("model", "whisper-9", None)])),
        (
            "bad temperature",
            *multipart(
                [
                    ("file", flac, "a.flac"),
                    ("model", "whisper-1", None),
                    ("temperature", "hot", None),
                ]
            ),
        ),
    ]
    return requests


class Client(threading.Thread):
    def __init__(
        self,
        k: int,
        url: str,
        files: list[AudioFile],
        bad: list,
        deadline: float,
        t0: float,
        soak: Soak,
        seed: int,
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.files, self.bad = urlparse(url), files, bad
        self.deadline, self.t0, self.soak = deadline, t0, soak
        self.rng = random.Random(seed * 1000 + k)

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            kind = self.rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
            if kind == "cancelled":
                self.hang_up(self.rng.choice(self.files))
                continue
            if kind == "good":
                audio = self.rng.choice(self.files)
                name, (body, ctype) = audio.name, encode_form(audio, "whisper-1")
            else:
                name, body, ctype = self.rng.choice(self.bad)
            self.post(kind, name, body, ctype)

    def post(self, kind: str, name: str, body: bytes, ctype: str) -> None:
        t = time.monotonic()
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=600)
        status = None
        try:
            conn.request(
                "POST", "/v1/audio/transcriptions", body=body, headers={"Content-Type": ctype}
            )
            response = conn.getresponse()
            answer = response.read()
            status = response.status
            if kind == "good" and status == 200 and not json.loads(answer)["text"].strip():
                status = -200  # a good request answered with no text
        except (OSError, http.client.HTTPException, ValueError):
            pass
        finally:
            conn.close()
        self.soak.add(Outcome(kind, name, t - self.t0, status, time.monotonic() - t))

    def hang_up(self, audio: AudioFile) -> None:
        t = time.monotonic()
        body, ctype = encode_form(audio, "whisper-1")
        head = (
            f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: soak\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        cut = self.rng.random() < 0.5  # half hang up mid-upload, half while it is transcribed
        try:
            with socket.create_connection((self.url.hostname, self.url.port), timeout=30) as sock:
                sock.sendall(head + (body[: len(body) // 2] if cut else body))
                time.sleep(self.rng.uniform(0.05, 1.5))
        except OSError:
            pass
        self.soak.add(Outcome("cancelled", audio.name, t - self.t0, None, time.monotonic() - t))


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample_rss(pid: int, soak: Soak, t0: float, stop: threading.Event) -> None:
    while not stop.wait(1.0 - (time.monotonic() - t0) % 1.0):
        value = rss_mb(pid)
        if value is not None:
            soak.rss.append((time.monotonic() - t0, value))


def report(soak: Soak, duration: float, url: str, tmp_dir: Path | None, log: Path | None) -> int:
    outs = soak.outcomes
    by_kind: dict[str, dict] = {}
    for o in outs:
        counts = by_kind.setdefault(o.kind, {})
        counts[str(o.status)] = counts.get(str(o.status), 0) + 1
    lost = [o for o in outs if o.kind != "cancelled" and o.status is None]
    wrong = [
        o
        for o in outs
        if (o.kind == "good" and o.status != 200)
        or (o.kind == "bad" and not (o.status and 400 <= o.status < 500))
    ]
    five = [o for o in outs if o.status and o.status >= 500]
    print(
        f"\n{len(outs)} requests in {duration:.0f} s of load: "
        + "; ".join(
            f"{kind} {sum(c.values())} {dict(sorted(c.items()))}"
            for kind, c in sorted(by_kind.items())
        )
    )
    print(f"lost {len(lost)}, 5xx {len(five)}, wrong status {len(wrong)}")
    print(
        "\n| minute | good done | p50 s | p95 s | RSS MB min / median / max |"
        "\n|---|---|---|---|---|"
    )
    minutes = max(1, int(duration // 60))  # whole minutes of load (the drain after is left out)
    p95s, peaks = [], []
    for m in range(minutes):
        lat = [
            o.latency
            for o in outs
            if o.kind == "good" and o.status == 200 and m * 60 <= o.at < (m + 1) * 60
        ]
        rss = [v for t, v in soak.rss if m * 60 <= t < (m + 1) * 60]
        p50, p95 = np.percentile(lat, [50, 95]) if lat else (float("nan"),) * 2
        low, mid, high = (min(rss), float(np.median(rss)), max(rss)) if rss else (float("nan"),) * 3
        peaks.append(high)
        p95s.append(p95)
        print(
            f"| {m + 1} | {len(lat)} | {p50:.2f} | {p95:.2f} | {low:.0f} / {mid:.0f} / {high:.0f} |"
        )
    values = np.array([v for _, v in soak.rss])
    times = np.array([t for t, _ in soak.rss])
    settled = times >= 60 if minutes > 2 else times >= 0  # the first minute is the ramp-up
    slope = (
        float(np.polyfit(times[settled] / 60, values[settled], 1)[0])
        if settled.sum() > 10
        else float("nan")
    )
    # The allocator returns memory in steps (a sawtooth), so growth is read from the envelope:
    # the second half's peak against the first half's, the ramp-up minute left out.
    base = 1 if minutes > 2 else 0
    middle = base + max(1, (minutes - base) // 2)
    growth = float(np.nanmax(peaks[middle:] or peaks)) - float(np.nanmax(peaks[base:middle]))
    print(
        f"\nRSS: {len(values)} samples, start {values[0]:.0f} MB, end {values[-1]:.0f} MB, "
        f"max {values.max():.0f} MB; peak of minutes {middle + 1}-{minutes} - peak of minutes "
        f"{base + 1}-{middle}: {growth:+.0f} MB; slope after the first minute {slope:+.2f} MB/min"
    )
    half = max(1, len(p95s) // 2)
    first, second = float(np.nanmedian(p95s[:half])), float(np.nanmedian(p95s[half:] or p95s))
    print(f"p95 latency, median over minutes: first half {first:.2f} s, second half {second:.2f} s")
    stats = get_json(url, "/stats", None)
    http_stats = stats["http"]
    engines = {name: m["engine"] for name, m in stats["models"].items()}
    print(
        f"server: requests {http_stats['requests']}, by status {http_stats['by_status']}, "
        f"disconnects {http_stats['disconnects']}, in flight {http_stats['in_flight']}; "
        + "; ".join(
            f"{n}: {e['requests_in_flight']} in flight, {e['cancelled']} cancelled"
            for n, e in engines.items()
        )
    )
    left = list(tmp_dir.glob("runtime-serve-*")) if tmp_dir else []
    tracebacks = log.read_text(errors="replace").count("Traceback") if log else 0
    print(f"temporary uploads left: {len(left)}; tracebacks in the server log: {tracebacks}")
    grew = growth > RSS_NOISE_MB
    print(
        f"verdict: {'FAIL' if lost or five or wrong or left or tracebacks or grew else 'ok'} "
        f"(RSS growth {'beyond' if grew else 'within'} {RSS_NOISE_MB:.0f} MB noise)"
    )
    return 1 if lost or five or wrong or left or tracebacks or grew else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="a running server (default: start one)")
    ap.add_argument("--pid", type=int, default=None, help="with --url: its process, for RSS")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--files", type=Path, default=EVAL)
    ap.add_argument("--log", type=Path, default=Path("/tmp/soak_server.log"))
    ap.add_argument("--csv", type=Path, default=None, help="write the RSS curve here")
    ns = ap.parse_args()
    files = load_files(ns.files, None)
    bad = bad_requests(files)
    tmp_dir, server = None, None
    if ns.url is None:
        tmp_dir = Path(tempfile.mkdtemp(prefix="soak-uploads-"))
        os.environ["TMPDIR"] = str(tmp_dir)
        ns.log.write_bytes(b"")
        server = ServerProcess(
            ["--profile", ns.profile, "--max-queue", str(max(64, ns.clients))], ns.log
        )
        url, pid = server.url, server.proc.pid
    else:
        url, pid = ns.url, ns.pid
    try:
        warm_up(url, files[0], None)
        soak, stop = Soak(), threading.Event()
        t0 = time.monotonic()
        sampler = threading.Thread(target=sample_rss, args=(pid, soak, t0, stop), daemon=True)
        if pid:
            sampler.start()
        clients = [
            Client(k, url, files, bad, t0 + ns.duration, t0, soak, ns.seed)
            for k in range(ns.clients)
        ]
        print(
            f"{ns.clients} clients for {ns.duration:.0f} s against {url}; {len(files)} good "
            f"files, {len(bad)} bad requests; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        time.sleep(2.0)  # the cancelled requests' last rows drain
        stop.set()
        if ns.csv:
            ns.csv.write_text(
                "seconds,rss_mb\n" + "".join(f"{t:.1f},{v:.1f}\n" for t, v in soak.rss)
            )
        return report(soak, ns.duration, url, tmp_dir, ns.log if server else None)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
