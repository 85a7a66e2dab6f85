"""Batch sizes measured side by side: a decoder step's cost per row, and whole files end to end.

    python tools/bench_batch_sizes.py --sizes 1,2,4,6,8,12,16 --rounds 2          # steps only
    python tools/bench_batch_sizes.py --sizes 8,12 --file ../shared/eval/longform/X.flac

Each measurement is its own process (``Runtime()`` with the default profile, the batch size set
by ``RUNTIME_BATCH__BATCH_SIZE``), rounds interleaved, every round printed. Steps: the median
of 100 one-token steps of B rows after a 20-token prompt, on random features (the cost does not
depend on them). Files: wall time of ``Runtime().transcribe`` after loading, and WER where the
file has a ``.txt`` reference beside it. What these measured is in ``runtime.config.batchsize``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STEPS = """
import json, sys, time
import numpy as np
from runtime import Runtime
rt = Runtime().load()
b = int(sys.argv[1])
feats = np.random.default_rng(0).standard_normal((b, 1500, rt.session.model.dims.n_audio_state))
state = rt.session.decoder(feats.astype(np.float32))
state.logits(np.full((b, 20), 50257, np.int64))
one = np.full((b, 1), 220, np.int64)
times = []
for i in range(105):
    t = time.perf_counter()
    state.logits(one)
    times.append(time.perf_counter() - t)
print(json.dumps({"step_ms": 1000 * float(np.median(times[5:]))}))
"""

FILE = """
import json, sys, time
from pathlib import Path
from runtime import Runtime
from tools.eval_common import wer
rt = Runtime().load()
t = time.perf_counter()
text = rt.transcribe(sys.argv[2]).text
out = {"wall_s": time.perf_counter() - t, "batch": rt.batch_options().batch_size}
ref = Path(sys.argv[2]).with_suffix(".txt")
if ref.exists():
    out["wer"] = 100 * wer(ref.read_text(), text)
print(json.dumps(out))
"""


def measure(size: int, file: str | None) -> dict:
    env = dict(os.environ, RUNTIME_BATCH__BATCH_SIZE=str(size), PYTHONPATH=str(REPO))
    argv = [sys.executable, "-c", FILE if file else STEPS, str(size)] + ([file] if file else [])
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"batch {size} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,6,8,12,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--file", help="a whole file end to end instead of decoder steps")
    ns = parser.parse_args()
    sizes = [int(s) for s in ns.sizes.split(",")]
    for r in range(1, ns.rounds + 1):
        for size in sizes:
            got = measure(size, ns.file)
            if ns.file:
                wer = f", WER {got['wer']:.2f}%" if "wer" in got else ""
                print(f"round {r} batch {size:2d}: {got['wall_s']:.2f} s{wer}", flush=True)
            else:
                ms = got["step_ms"]
                print(
                    f"round {r} batch {size:2d}: step {ms:.2f} ms, {ms / size:.2f} ms per row",
                    flush=True,
                )


if __name__ == "__main__":
    main()
