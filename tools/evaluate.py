"""WER of this runtime on ../shared/eval: LibriSpeech subsets apart, the long-form chapters, jfk.

    python tools/evaluate.py                                   # sequential, greedy with fallback
    python tools/evaluate.py --mode batched --batch-size 8     # the batched path
    python tools/evaluate.py --temperature 0 --sets librispeech # greedy at t=0 only
    python tools/evaluate.py --backend cpu --model tiny.en --out tools/results/eval.md

Scoring: corpus WER (total errors / total reference words) after tools.eval_common's
normalization (lower case, punctuation stripped, numbers spelled out) on both sides.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_jfk, load_librispeech, load_longform, word_errors  # noqa: E402


def _items(sets: list[str]):
    if "librispeech" in sets:
        for u in load_librispeech():
            yield u.subset, u.audio, u.reference, u.duration_s
    if "jfk" in sets:
        j = load_jfk()
        yield "jfk", j.audio, j.reference, j.duration_s
    if "longform" in sets:
        for c in load_longform():
            yield f"longform {c.name}", c.audio, c.reference, c.duration_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="librispeech,jfk,longform")
    ap.add_argument("--mode", choices=("sequential", "batched"), default="sequential")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="a single temperature (default: the fallback ladder 0..1)",
    )
    ap.add_argument("--beam-size", type=int, default=None)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()

    from runtime import Runtime

    rt = Runtime(args.model, backend=args.backend, precision=args.precision).load()
    kwargs = dict(
        sequential=args.mode == "sequential", batch_size=args.batch_size, beam_size=args.beam_size
    )
    if args.temperature is not None:
        kwargs["temperature"] = args.temperature
    refs, hyps = defaultdict(list), defaultdict(list)
    seconds, audio = defaultdict(float), defaultdict(float)
    for group, path, reference, duration in _items(args.sets.split(",")):
        t = time.perf_counter()
        result = rt.transcribe(path, **kwargs)
        seconds[group] += time.perf_counter() - t
        audio[group] += duration
        refs[group].append(reference)
        hyps[group].append(result.text)
    lines = [
        f"model {args.model}, backend {args.backend}, mode {args.mode}"
        f"{' B=' + str(args.batch_size) if args.mode == 'batched' else ''}, "
        f"temperature {args.temperature if args.temperature is not None else 'fallback'}, "
        f"beam {args.beam_size or 'greedy'}",
        "",
        "| set | files | audio s | WER % | x real time |",
        "| --- | --- | --- | --- | --- |",
    ]
    for group in refs:
        errs = word_errors(refs[group], hyps[group])
        lines.append(
            f"| {group} | {len(refs[group])} | {audio[group]:.1f} | "
            f"{100 * errs.wer:.2f} | {audio[group] / seconds[group]:.1f} |"
        )
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
