"""The onnx decoder with and without I/O binding (``io_binding``), side by side on one machine.

    python tools/bench_binding.py --steps --batches 1,8,16 --rounds 3   # decoder steps/s
    python tools/bench_binding.py --chapter                             # 8.4-min chapter

``--steps``: decoder steps per second at each batch (rows of random features, a 4-token prompt,
then ``--n-steps`` single-token steps), plain ``run`` and bound in turn, every round printed,
then the medians. ``--chapter``: the 8.4-min chapter through the default profile with
``io_binding`` off and on, each in its own process: wall time, and whether the texts are equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
CHAPTER_8 = REPO.parent / "shared/eval/longform/librispeech-19-198_northanger-abbey-ch01.flac"

CHAPTER_RUN = """
import json, sys, time
from runtime import Runtime
rt = Runtime(backend_options={"io_binding": sys.argv[2] == "on"}).load()
t = time.perf_counter()
result = rt.transcribe(sys.argv[1])
print(json.dumps(dict(wall=time.perf_counter() - t, text=result.text)))
"""


def steps_per_s(session, batch: int, n_steps: int, seed: int = 0) -> float:
    """Single-token decoder steps per second for ``batch`` rows (after a 4-token prompt)."""
    dims = session.model.dims
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, dims.n_audio_ctx, dims.n_audio_state)).astype(np.float32)
    state = session.decoder(features)
    state.logits(np.full((batch, 4), 50257, np.int64))
    tokens = np.full((batch, 1), 300, np.int64)
    start = time.perf_counter()
    for _ in range(n_steps):
        state.logits(tokens)
    return n_steps / (time.perf_counter() - start)


def bench_steps(model: str, precision: str, batches: list[int], rounds: int, n_steps: int) -> None:
    from backends.onnx import OnnxBackend
    from runtime.backend import LoadOptions
    from runtime.model.registry import resolve_model

    whisper = resolve_model(model)
    sessions = {
        name: OnnxBackend().load(
            whisper, LoadOptions(precision=precision, options={"io_binding": flag})
        )
        for name, flag in (("run", False), ("bound", True))
    }
    results: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for batch in batches:
            for name, session in sessions.items():
                cpu = time.process_time()
                rate = steps_per_s(session, batch, n_steps)
                cpu_ms = (time.process_time() - cpu) * 1000 / n_steps  # prompt included
                results.setdefault((name, batch), []).append(rate)
                results.setdefault((name + "-cpu", batch), []).append(cpu_ms)
                print(
                    f"round {r + 1} batch {batch:2d} {name:5s} {rate:8.1f} steps/s "
                    f"{cpu_ms:7.2f} CPU ms/step",
                    flush=True,
                )
    print(f"\n{model} {precision}, median of {rounds} rounds, {n_steps} steps each")
    print("batch | run steps/s | bound steps/s | bound/run | CPU ms/step run | bound")
    for batch in batches:
        plain = statistics.median(results[("run", batch)])
        bound = statistics.median(results[("bound", batch)])
        cpu = [statistics.median(results[(n, batch)]) for n in ("run-cpu", "bound-cpu")]
        print(
            f"{batch:5d} | {plain:11.1f} | {bound:13.1f} | {bound / plain:9.3f} "
            f"| {cpu[0]:15.2f} | {cpu[1]:5.2f}"
        )


def bench_chapter(rounds: int) -> None:
    walls: dict[str, list[float]] = {"off": [], "on": []}
    texts: dict[str, str] = {}
    for r in range(rounds):
        for flag in ("off", "on"):
            out = subprocess.run(
                [sys.executable, "-c", CHAPTER_RUN, str(CHAPTER_8), flag],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            walls[flag].append(result["wall"])
            texts[flag] = result["text"]
            print(f"round {r + 1} io_binding {flag:3s} {result['wall']:6.2f} s", flush=True)
    off, on = statistics.median(walls["off"]), statistics.median(walls["on"])
    print(f"\n8.4-min chapter, default profile: io_binding off {off:.2f} s, on {on:.2f} s")
    print(f"texts identical: {texts['off'] == texts['on']} ({len(texts['on'])} characters)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", action="store_true", help="decoder steps/s per batch")
    parser.add_argument("--chapter", action="store_true", help="the 8.4-min chapter")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-steps", type=int, default=40)
    args = parser.parse_args(argv)
    if args.steps:
        batches = [int(b) for b in args.batches.split(",")]
        bench_steps(args.model, args.precision, batches, args.rounds, args.n_steps)
    if args.chapter:
        bench_chapter(args.rounds)


if __name__ == "__main__":
    main()
