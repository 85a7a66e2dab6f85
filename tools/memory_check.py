"""Peak resident memory of a whole transcription, for a 15-minute and a ~2-hour file.

    python tools/memory_check.py                    # 15.5 min chapter, then both chapters x5 (~2 h)
    python tools/memory_check.py --repeat 2 --backend cpu --batch-size 8
    python tools/memory_check.py --preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2

The long file is written once to a temporary FLAC (the two long-form chapters concatenated,
repeated). Each transcription runs in a fresh subprocess so its peak RSS is its own.
``--preload`` runs those subprocesses with another malloc (``LD_PRELOAD``): glibc's holds on
to heap that ONNX Runtime's per-run buffers fragment, jemalloc gives more of it back (README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_longform  # noqa: E402

CHILD = """
import json, resource, sys, time
from runtime import Runtime
rt = Runtime({model!r}, backend={backend!r})
t = time.perf_counter()
r = rt.transcribe(sys.argv[1], batch_size={batch_size})
wall = time.perf_counter() - t
print(json.dumps(dict(duration=r.duration, wall=wall, words=len(r.text.split()),
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def write_long_file(path: Path, repeat: int) -> float:
    """Concatenate the chapters ``repeat`` times into one 16 kHz FLAC; returns its seconds."""
    import av
    import numpy as np

    from runtime.audio.decode import load_audio

    chapters = [load_audio(c.audio) for c in load_longform()]
    total = 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        for _ in range(repeat):
            for audio in chapters:
                pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
                frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
                frame.sample_rate = 16000
                for packet in stream.encode(frame):
                    out.mux(packet)
                total += len(audio)
        for packet in stream.encode(None):
            out.mux(packet)
    return total / 16000


def measure(path: Path, args: argparse.Namespace) -> dict:
    code = CHILD.format(model=args.model, backend=args.backend, batch_size=args.batch_size)
    env = {**os.environ, "LD_PRELOAD": args.preload} if args.preload else None
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="times the chapters are repeated")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--backend", default=None, help="default: the profile detect chooses")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--preload", default=None, help="a malloc library to LD_PRELOAD (jemalloc)")
    args = ap.parse_args()
    if args.preload and not Path(args.preload).is_file():
        ap.error(f"--preload {args.preload}: no such library (Debian: apt install libjemalloc2)")
    short = max(load_longform(), key=lambda c: c.duration_s).audio
    with tempfile.TemporaryDirectory() as tmp:
        long_path = Path(tmp) / "long.flac"
        seconds = write_long_file(long_path, args.repeat)
        rows = [
            ("15-min chapter", measure(short, args)),
            (f"{seconds / 3600:.2f} h file", measure(long_path, args)),
        ]
    print("| input | audio s | wall s | x real time | peak RSS MB |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(
            f"| {name} | {r['duration']:.0f} | {r['wall']:.0f} | "
            f"{r['duration'] / r['wall']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    growth = rows[1][1]["peak_rss_mb"] / rows[0][1]["peak_rss_mb"] - 1
    print(f"\npeak RSS growth from the 15-min file to the long one: {100 * growth:.1f}%")


if __name__ == "__main__":
    main()
