"""What word timestamps cost on the batched path: the same file with and without, side by side.

    python tools/bench_words.py                         # numpy and onnx int8, 8.4-min chapter
    python tools/bench_words.py --backends onnx:int8 --repeat 3 --file jfk.flac

Runs alternate (without, with, without, with, ...) after one warm-up run of each, so drift in
the machine's load falls on both; each configuration's median wall time and process CPU time
(all threads; less sensitive to other processes on a shared machine) and the ratios are
printed, with the ``words`` stage (the extra decoder pass, DTW and word split) on its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import eval_dir  # noqa: E402

DEFAULT_FILE = "longform/librispeech-19-198_northanger-abbey-ch01.flac"


def bench(backend: str, precision: str | None, audio, repeat: int) -> None:
    from runtime import Runtime

    rt = Runtime("tiny.en", backend=backend, precision=precision)
    print(rt.session.describe(), flush=True)
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    stage: list[float] = []
    for words in (False, True):  # warm-up: graphs, caches, first allocations
        rt.transcribe(audio, word_timestamps=words)
    for _ in range(repeat):
        for words in (False, True):
            t0, c0 = time.perf_counter(), time.process_time()
            result = rt.transcribe(audio, word_timestamps=words)
            wall[words].append(time.perf_counter() - t0)
            cpu[words].append(time.process_time() - c0)
            if words:
                stage.append(result.timings.get("words", 0.0))
    for label, runs in (("wall", wall), ("cpu", cpu)):
        base, with_words = statistics.median(runs[False]), statistics.median(runs[True])
        best = 100 * (min(runs[True]) / min(runs[False]) - 1)
        print(
            f"  {label:4s} without words {base:6.2f} s  with words {with_words:6.2f} s  "
            f"extra {100 * (with_words / base - 1):+5.1f}% (medians), {best:+5.1f}% (best "
            f"runs)  (runs {[round(t, 1) for t in runs[False]]} / "
            f"{[round(t, 1) for t in runs[True]]})"
        )
    print(f"  words stage (wall, median) {statistics.median(stage):.2f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    from runtime.audio.decode import load_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", default=DEFAULT_FILE, help="a file under ../shared/eval")
    parser.add_argument(
        "--backends",
        default="cpu,onnx:int8",
        help="backend[:precision] list (default: cpu,onnx:int8)",
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    audio = load_audio(eval_dir() / args.file)
    print(f"{args.file}: {len(audio) / 16000:.1f} s, batched path, tiny.en")
    for spec in args.backends.split(","):
        backend, _, precision = spec.partition(":")
        bench(backend, precision or None, audio, args.repeat)


if __name__ == "__main__":
    main()
