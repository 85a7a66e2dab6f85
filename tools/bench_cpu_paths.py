"""The CPU paths side by side on one long file: numpy, ONNX fp32, ONNX int8 (the ``cpu`` profile)
and faster-whisper's batched pipeline, all on the same tiny.en weights, in one run.

    python tools/bench_cpu_paths.py                                  # 15.5-min chapter, 2 rounds
    python tools/bench_cpu_paths.py --configs int8,faster --rounds 3
    python tools/bench_cpu_paths.py --faster-python /work/refvenv/bin/python

Every configuration runs in its own subprocess (its own memory and threads), and the rounds
interleave the configurations (A B C D, A B C D, ...) so a noisy machine hurts all of them alike;
the table gives each one's best wall time, real-time factor (x real time), WER against the
chapter's reference, stage times of our runtime, and the speed ratio to faster-whisper. Model
loading is not timed; audio decoding is (both sides get the file path). faster-whisper runs from
a venv that has it (``--faster-python``): its batched pipeline with int8 weights, greedy (beam 1)
and batch 8, on the same CTranslate2 folder our runtime reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_longform, word_errors  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OURS = """
import json, sys, time
from runtime import Runtime
rt = Runtime("tiny.en", {kwargs})
rt.session, rt.tokenizer
t = time.perf_counter()
r = rt.transcribe(sys.argv[1], sequential={sequential})
wall = time.perf_counter() - t
print(json.dumps(dict(wall=wall, text=r.text, duration=r.duration, stages=r.timings,
                      detail=r.run.detail)))
"""
FASTER = """
import json, os, sys, time
from faster_whisper import BatchedInferencePipeline, WhisperModel
model = WhisperModel({folder!r}, device="cpu", compute_type="int8", cpu_threads=os.cpu_count())
pipeline = BatchedInferencePipeline(model)
t = time.perf_counter()
segments, info = pipeline.transcribe(sys.argv[1], language="en", beam_size={beam}, batch_size=8)
text = " ".join(s.text for s in segments)
wall = time.perf_counter() - t
print(json.dumps(dict(wall=wall, text=text, duration=info.duration, stages={{}},
                      detail="faster-whisper batched int8 beam {beam} batch 8")))
"""
CONFIGS = {
    "numpy": ("numpy backend, batched", OURS, dict(kwargs='backend="cpu"', sequential=False)),
    "fp32": (
        "ONNX fp32, batched",
        OURS,
        dict(kwargs='backend="onnx", precision="fp32"', sequential=False),
    ),
    "int8": (
        "ONNX int8 (cpu profile), batched",
        OURS,
        dict(kwargs='profile="cpu"', sequential=False),
    ),
    "int8-unfused": (
        "ONNX int8 (cpu profile), batched, standard-op attention",
        OURS,
        dict(kwargs='profile="cpu", backend_options=dict(fused_attention=False)', sequential=False),
    ),
    "int8-seq": (
        "ONNX int8 (cpu profile), sequential",
        OURS,
        dict(kwargs='profile="cpu"', sequential=True),
    ),
    "faster": ("faster-whisper batched int8 beam 1", FASTER, dict(beam=1)),
    "faster-beam5": ("faster-whisper batched int8 beam 5", FASTER, dict(beam=5)),
}


def ct2_folder() -> str:
    """The CTranslate2 folder that tiny.en is read from (faster-whisper loads it as it is)."""
    from runtime.model.registry import resolve_model

    source = Path(resolve_model("tiny.en").source)
    return str(source.parent if source.is_file() else source)


def run_one(name: str, audio: Path, faster_python: str) -> dict:
    _, template, params = CONFIGS[name]
    if template is FASTER:
        code, python = template.format(folder=ct2_folder(), **params), faster_python
    else:
        code, python = template.format(**params), sys.executable
    out = subprocess.run(
        [python, "-c", code, str(audio)], cwd=REPO, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=None, help="default: the 15.5-min chapter")
    ap.add_argument("--configs", default="numpy,fp32,int8,int8-seq,faster")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--faster-python", default="/work/refvenv/bin/python")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    chapters = {c.audio.name: c for c in load_longform()}
    chapter = (
        chapters.get(args.file.name)
        if args.file
        else max(chapters.values(), key=lambda c: c.audio.stat().st_size)
    )
    audio = args.file or chapter.audio
    names = args.configs.split(",")
    best: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for name in names:
            row = run_one(name, audio, args.faster_python)
            print(f"round {round_ + 1} {name}: {row['wall']:.2f} s", file=sys.stderr, flush=True)
            if name not in best or row["wall"] < best[name]["wall"]:
                best[name] = row
    faster = best.get("faster")
    print(f"{audio.name}: best of {args.rounds} interleaved rounds\n")
    print("| configuration | wall s | x real time | WER % | vs faster-whisper | stages (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        row = best[name]
        wer = word_errors(chapter.reference, row["text"]).wer * 100 if chapter else float("nan")
        ratio = f"{faster['wall'] / row['wall']:.2f}x" if faster else "-"
        stages = {k: round(v, 2) for k, v in row["stages"].items() if k != "total"}
        print(
            f"| {CONFIGS[name][0]} | {row['wall']:.2f} | {row['duration'] / row['wall']:.1f} "
            f"| {wer:.2f} | {ratio} | {stages} |"
        )
        row["wer"] = wer
    if args.json:
        args.json.write_text(json.dumps(best, indent=1))


if __name__ == "__main__":
    main()
