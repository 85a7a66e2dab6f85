"""Busy rows per decoder step: how full the continuous decoder's batch stays on one file.

    python tools/busy_rows.py ../shared/eval/longform/librispeech-118-47824_abandoned-room-ch13.flac

Counts every one-token step of the ONNX decoder (prompt reads are not steps) by its rows, with
the default profile (``RUNTIME_BATCH__BATCH_SIZE`` and the like change it), and prints the step
count, the mean rows per step, the histogram, the wall time and, when the file has a ``.txt``
reference beside it, the WER.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    ns = parser.parse_args()

    from backends.onnx import decoder
    from runtime import Runtime
    from tools.eval_common import wer

    rows: collections.Counter[int] = collections.Counter()
    step = decoder.OnnxDecoderState._step

    def counted(self, tokens, positions, cross_qk):  # type: ignore[no-untyped-def]
        if tokens.shape[1] == 1:
            rows[tokens.shape[0]] += 1
        return step(self, tokens, positions, cross_qk)

    decoder.OnnxDecoderState._step = counted  # type: ignore[method-assign]
    rt = Runtime().load()
    t = time.perf_counter()
    result = rt.transcribe(ns.file)
    wall = time.perf_counter() - t
    steps = sum(rows.values())
    mean = sum(k * v for k, v in rows.items()) / max(steps, 1)
    batch = rt.batch_options().batch_size
    print(f"{steps} steps, {mean:.2f} busy rows of {batch} on average, {wall:.2f} s")
    print("steps by rows:", dict(sorted(rows.items())))
    reference = Path(ns.file).with_suffix(".txt")
    if reference.exists():
        print(f"WER {100 * wer(reference.read_text(), result.text):.2f}%")


if __name__ == "__main__":
    main()
