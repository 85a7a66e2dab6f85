"""Replay audio files as live streams through `runtime serve`'s Realtime WebSocket and report
latencies and WER.

    python tools/replay_live.py                              # 1 stream, LibriSpeech utterances
    python tools/replay_live.py --streams 4                  # 4 concurrent sessions
    python tools/replay_live.py --chapter --offline          # the 8.4-min chapter; WER beside
                                                             # the offline (upload) path
    python tools/replay_live.py --url http://127.0.0.1:8000 --clock 2   # twice real time

Each session sends 24 kHz PCM16 in 100 ms pieces at real time (times ``--clock``), the files
one after another with ``--gap-s`` of silence between them, under server VAD. Latencies are
measured on the session's audio clock (when a sample was sent) against the server's turn
events: first partial = the first transcription delta of a turn after its speech began
(``speech_started.audio_start_ms`` + prefix padding); final = ``completed`` after the end of
its speech (``speech_stopped.audio_end_ms`` - ``silence_duration_ms``). The finals, joined, are
scored against the references (normalised as tools/eval_common does). Say what else ran on the
machine next to any number.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import (  # noqa: E402
    decode_audio,
    load_librispeech,
    load_longform,
    word_errors,
)
from tools.load_test import ServerProcess  # noqa: E402

PIECE_S = 0.1
PREFIX_MS, SILENCE_MS = 300, 500


@dataclass
class Stream:
    """What one session sent and saw."""

    pcm: bytes  # 24 kHz s16le
    reference: str
    t0: float = 0.0  # wall time of audio sample 0 (at clock 1; scaled by the clock)
    started: dict[str, float] = field(default_factory=dict)  # item -> speech onset (audio s)
    speech_end: dict[str, float] = field(default_factory=dict)  # item -> end of speech
    first_delta: dict[str, float] = field(default_factory=dict)  # item -> wall time
    completed: dict[str, tuple[float, str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)


def stream_audio(files: list[tuple[Path, str]], gap_s: float) -> Stream:
    parts, refs = [], []
    for path, ref in files:
        parts += [decode_audio(path, 24000), np.zeros(int(gap_s * 24000), np.float32)]
        refs.append(ref)
    audio = np.concatenate(parts)
    pcm = (np.clip(audio, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    return Stream(pcm, " ".join(refs))


async def run_session(url: str, key: str | None, stream: Stream, clock: float) -> None:
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ws_url = url.replace("http", "ws", 1) + "/v1/realtime?intent=transcription"
    async with connect(ws_url, additional_headers=headers, max_size=None) as ws:
        await ws.send(json.dumps(session_update()))
        stream.t0 = time.monotonic()
        reader = asyncio.ensure_future(read_events(ws, stream, clock))
        step = int(24000 * PIECE_S) * 2
        for i in range(0, len(stream.pcm), step):
            delay = stream.t0 + (i / 48000) / clock - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = base64.b64encode(stream.pcm[i : i + step]).decode()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        # the last turn: its silence is in the gap; wait until every committed turn is final
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            len(stream.completed) < len(stream.order) or not stream.order
        ):
            await asyncio.sleep(0.1)
        reader.cancel()


def session_update() -> dict:
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1", "language": "en"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": PREFIX_MS,
                        "silence_duration_ms": SILENCE_MS,
                    },
                }
            },
        },
    }


async def read_events(ws, stream: Stream, clock: float) -> None:
    async for message in ws:
        event = json.loads(message)
        now = time.monotonic()
        kind, item = event["type"], event.get("item_id")
        if kind == "input_audio_buffer.speech_started":
            stream.started[item] = (event["audio_start_ms"] + PREFIX_MS) / 1000
        elif kind == "input_audio_buffer.speech_stopped":
            stream.speech_end[item] = (event["audio_end_ms"] - SILENCE_MS) / 1000
        elif kind == "input_audio_buffer.committed":
            stream.order.append(item)
        elif kind.endswith("transcription.delta") and item not in stream.first_delta:
            stream.first_delta[item] = now
        elif kind.endswith("transcription.completed"):
            stream.completed[item] = (now, event["transcript"])
        elif kind == "error":
            stream.errors.append(event["error"])


def latencies(stream: Stream, clock: float) -> tuple[list[float], list[float]]:
    """(first partial, final) latencies in seconds of wall time, per turn."""

    def wall(audio_s: float) -> float:
        return stream.t0 + audio_s / clock

    first = [
        stream.first_delta[i] - wall(stream.started[i])
        for i in stream.started
        if i in stream.first_delta
    ]
    final = [
        stream.completed[i][0] - wall(stream.speech_end[i])
        for i in stream.speech_end
        if i in stream.completed
    ]
    return first, final


def pct(values: list[float]) -> str:
    if not values:
        return "n/a"
    p50, p95 = np.percentile(values, [50, 95])
    return f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(values):.2f} s (n={len(values)})"


def offline_text(url: str, key: str | None, path: Path) -> str:
    from openai import OpenAI

    client = OpenAI(api_key=key or "none", base_url=url + "/v1", max_retries=0, timeout=1800)
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model="whisper-1", file=f).text


def inputs(ns: argparse.Namespace) -> list[list[tuple[Path, str]]]:
    """The files each stream replays."""
    if ns.chapter:
        chapter = next(f for f in load_longform() if "northanger" in f.name)
        return [[(chapter.audio, chapter.reference)] for _ in range(ns.streams)]
    utts = [u for u in load_librispeech(["test-clean"]) if u.duration_s < 20][: ns.utterances]
    return [[(u.audio, u.reference) for u in utts[k:] + utts[:k]] for k in range(ns.streams)]


async def replay(ns: argparse.Namespace, url: str) -> list[Stream]:
    streams = [stream_audio(files, ns.gap_s) for files in inputs(ns)]
    await asyncio.gather(*(run_session(url, ns.api_key, s, ns.clock) for s in streams))
    return streams


def report(ns: argparse.Namespace, url: str, streams: list[Stream]) -> None:
    first = [x for s in streams for x in latencies(s, ns.clock)[0]]
    final = [x for s in streams for x in latencies(s, ns.clock)[1]]
    print(f"streams {ns.streams}, clock {ns.clock:g}x, turns {sum(len(s.order) for s in streams)}")
    print(f"first partial after speech start: {pct(first)}")
    print(f"final after end of speech:        {pct(final)}")
    if ns.verbose:
        for s in streams:
            for i in s.order:
                nan = float("nan")
                start, end = s.started.get(i, nan), s.speech_end.get(i, nan)
                first, done = s.first_delta.get(i), s.completed.get(i, (None, ""))[0]
                print(
                    f"  turn: speech {start:.2f}-{end:.2f} s"
                    f", first delta at {(first - s.t0) * ns.clock if first else nan:.2f}"
                    f", final at {(done - s.t0) * ns.clock if done else nan:.2f}"
                )
    errors = [e for s in streams for e in s.errors]
    if errors:
        print(f"errors: {len(errors)}; first: {errors[0]}")
    hyps = [" ".join(s.completed[i][1] for i in s.order if i in s.completed) for s in streams]
    live = word_errors([s.reference for s in streams], hyps)
    print(f"live WER {100 * live.wer:.2f}% ({live.ref_words} reference words)")
    if ns.offline:
        path = inputs(ns)[0][0][0]
        offline = word_errors(streams[0].reference, offline_text(url, ns.api_key, path))
        print(f"offline (upload) WER {100 * offline.wer:.2f}% on the same audio")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a running server (default: start one)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--clock", type=float, default=1.0, help="audio seconds per wall second")
    p.add_argument("--utterances", type=int, default=8, help="test-clean utterances per stream")
    p.add_argument("--gap-s", type=float, default=1.5, help="silence between files")
    p.add_argument("--chapter", action="store_true", help="the 8.4-min Northanger Abbey chapter")
    p.add_argument("--offline", action="store_true", help="also the upload path's WER")
    p.add_argument("--verbose", "-v", action="store_true", help="every turn's times")
    ns = p.parse_args()
    server = None
    if ns.url is None:
        server = ServerProcess(["--model", ns.model], Path("/tmp/replay_live_server.log"))
        ns.url = server.url
    try:
        t = time.monotonic()
        streams = asyncio.run(replay(ns, ns.url))
        print(f"replayed in {time.monotonic() - t:.1f} s")
        report(ns, ns.url, streams)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
