"""WER if the decoder's cross-attention keys and values were int8: the simulation run before
building them (they are the ``cpu`` profile's ``cross_kv_int8`` since the seventh pass).

Each row's float16 keys and values (the ``cpu`` profile with ``cross_kv_int8`` off) are
quantized to int8 per key and head (symmetric, scale max |x| / 127) and dequantized in place as
``cross_kv`` writes them, so the decoder reads int8-precision keys and values; everything else
is the ``cpu`` profile. Each set and precision runs in its own process; speed is not measured
(the quantization here is extra numpy work). Figures: docs/benchmarks.md (sixth pass).

    python tools/cross_kv_precision.py --sets ch15,ch8,utts --roles none,v,kv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETS = ("ch15", "ch8", "utts", "jfk")
ROLES = ("none", "v", "kv")  # as landed, values int8, keys and values int8

CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, "tools")
import backends.onnx.decoder as decoder
from eval_common import eval_dir, load_librispeech, load_longform, word_errors
from runtime import Runtime

which, roles = sys.argv[1], sys.argv[2]

def int8(x):
    wide = x.astype(np.float32)
    scale = np.abs(wide).max(axis=3, keepdims=True) / 127.0  # per key (and lane) over dh
    scale[scale == 0] = 1.0
    return (np.clip(np.rint(wide / scale), -127, 127) * scale).astype(x.dtype)

original = decoder.OnnxDecoderState._cross_kv

def cross_kv(graph, names, features, into):
    outputs = original(graph, names, features, into)
    for name, array in zip(names, outputs):
        if name.startswith("cross_") and name[6] in roles:
            array[...] = int8(array)
    return outputs

decoder.OnnxDecoderState._cross_kv = staticmethod(cross_kv)
runtime = Runtime(profile="cpu", backend_options={"cross_kv_int8": False})  # float16 ones
if which == "utts":
    items = [(str(u.audio), u.reference) for u in load_librispeech()]
elif which == "jfk":
    items = [(str(eval_dir() / "jfk.flac"), (eval_dir() / "jfk.txt").read_text())]
else:
    chapters = sorted(load_longform(), key=lambda c: c.audio.stat().st_size)
    chapter = chapters[1] if which == "ch15" else chapters[0]
    items = [(str(chapter.audio), chapter.reference)]
texts = [runtime.transcribe(path).text for path, _ in items]
wer = word_errors([ref for _, ref in items], texts).wer
print(json.dumps({"wer": 100 * wer}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="ch15,ch8,utts", help=f"of {', '.join(SETS)}")
    parser.add_argument("--roles", default=",".join(ROLES), help="none, v (values), kv (both)")
    ns = parser.parse_args()
    print("| set | " + " | ".join(ns.roles.split(",")) + " |", flush=True)
    for which in ns.sets.split(","):
        cells = []
        for roles in ns.roles.split(","):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, which, roles],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                cells.append(f"failed: {why}")
                continue
            cells.append(f"{json.loads(done.stdout.strip().splitlines()[-1])['wer']:.2f}%")
        print(f"| {which} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
