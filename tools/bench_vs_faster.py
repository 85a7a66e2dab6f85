"""This runtime against faster-whisper on the same tiny.en weights: the speed issue's table.

    python tools/bench_vs_faster.py --faster-python /path/to/venv/bin/python     # 3 rounds
    python tools/bench_vs_faster.py --tasks chapter-8,jfk-process --rounds 5

Tasks: the two long-form chapters (faster-whisper's batched pipeline, int8, batch 8, greedy,
against ``Runtime()``'s defaults), ten minutes of synthetic speech made here with espeak-ng from
the LibriSpeech train-clean references (text no setting was tuned on), the 123 LibriSpeech
utterances one by one (faster-whisper's sequential ``transcribe``, int8, greedy), model load
(after the imports), and ``runtime transcribe jfk.flac`` as a whole process against a script doing
the same with faster-whisper (import, load, transcribe, print).

Every measurement is its own process; each round runs every task on both sides in turn, so a
noisy spell hurts both. Every round is printed, then per task the median wall time of each side,
the ratio of the medians, the range of the per-round ratios, and WER (same normalization both).
faster-whisper runs from a venv that has it: ``python -m venv fw && fw/bin/pip install
faster-whisper==1.2.1``.

Both sides start from bytecode: pip compiled faster-whisper's modules when it installed them, and
this project's are compiled here first (an editable install under ``PYTHONDONTWRITEBYTECODE``
would otherwise compile ~100 modules on every start, 0.1 s of the whole-process time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_librispeech, load_longform, word_errors  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = ("chapter-15", "chapter-8", "synthetic-10", "librispeech-123", "jfk-process")
RUNTIME = Path(sys.executable).with_name("runtime")

OURS_FILES = """
import json, sys, time
from runtime import Runtime
t = time.perf_counter()
rt = Runtime().load()
load = time.perf_counter() - t
t = time.perf_counter()
texts = [rt.transcribe(p).text for p in sys.argv[1:]]
print(json.dumps(dict(wall=time.perf_counter() - t, load=load, texts=texts)))
"""
FASTER_FILES = """
import json, os, sys, time
from faster_whisper import BatchedInferencePipeline, WhisperModel
t = time.perf_counter()
model = WhisperModel({folder!r}, device="cpu", compute_type="int8", cpu_threads=os.cpu_count())
load = time.perf_counter() - t
batched = {batched}
pipeline = BatchedInferencePipeline(model) if batched else model
t = time.perf_counter()
texts = []
for p in sys.argv[1:]:
    kw = dict(batch_size=8) if batched else {{}}
    segments, _ = pipeline.transcribe(p, language="en", beam_size=1, **kw)
    texts.append(" ".join(s.text.strip() for s in segments))
print(json.dumps(dict(wall=time.perf_counter() - t, load=load, texts=texts)))
"""
FASTER_PROCESS = """
import os, sys
from faster_whisper import WhisperModel
model = WhisperModel({folder!r}, device="cpu", compute_type="int8", cpu_threads=os.cpu_count())
segments, _ = model.transcribe(sys.argv[1], language="en", beam_size=1)
for s in segments:
    print(f"[{{s.start:.2f}} --> {{s.end:.2f}}] {{s.text}}")
"""


def ct2_folder() -> str:
    """The CTranslate2 folder tiny.en is read from (faster-whisper loads it as it is)."""
    from runtime.model.registry import resolve_model

    source = Path(resolve_model("tiny.en").source)
    return str(source.parent if source.is_file() else source)


def synthetic_speech(folder: Path, minutes: float = 10.0) -> tuple[Path, str]:
    """About ``minutes`` of espeak-ng speech (four voices in turn, 0.6 s pauses) read from the
    train-clean references, as one 16 kHz WAV, and its reference text."""
    import wave

    import numpy as np

    from runtime.audio.decode import load_audio

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for the synthetic speech (apt-get install espeak-ng)")
    voices = ("en-us", "en", "en-us+m3", "en+f2")
    pieces, words, total = [], [], 0.0
    for i, utt in enumerate(load_librispeech(folder="librispeech-train-clean")):
        wav = folder / f"piece{i}.wav"
        text = utt.reference.lower()
        subprocess.run(
            ["espeak-ng", "-v", voices[i % len(voices)], "-s", "165", "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        audio = load_audio(wav)  # 16 kHz float32
        pieces += [audio, np.zeros(int(0.6 * 16000), np.float32)]
        words.append(text)
        total += len(audio) / 16000 + 0.6
        if total >= minutes * 60:
            break
    path = folder / "synthetic.wav"
    samples = np.clip(np.concatenate(pieces) * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return path, " ".join(words)


def run_files(code: str, python: str, files: list[Path]) -> dict:
    out = subprocess.run(
        [python, "-c", code, *map(str, files)], cwd=REPO, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_process(cmd: list[str]) -> dict:
    """A whole process, timed from outside (start-up included); its transcript on stdout."""
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    text = " ".join(line.split("] ", 1)[-1] for line in out.stdout.splitlines())
    return dict(wall=wall, load=0.0, texts=[text])


def tasks(tmp: Path) -> dict[str, tuple[list[Path], list[str], bool]]:
    """name -> (inputs, references, faster-whisper batched?)."""
    chapters = {c.audio.stat().st_size: c for c in load_longform()}
    small, big = (chapters[k] for k in sorted(chapters))
    utts = load_librispeech()
    synth, synth_ref = synthetic_speech(tmp)
    jfk = REPO.parent / "shared" / "eval" / "jfk.flac"
    jfk_ref = jfk.with_suffix(".txt").read_text(encoding="utf-8")
    return {
        "chapter-15": ([big.audio], [big.reference], True),
        "chapter-8": ([small.audio], [small.reference], True),
        "synthetic-10": ([synth], [synth_ref], True),
        "librispeech-123": ([u.audio for u in utts], [u.reference for u in utts], False),
        "jfk-process": ([jfk], [jfk_ref], False),
    }


def measure(name: str, side: str, inputs: list[Path], batched: bool, fw_python: str) -> dict:
    if name == "jfk-process":
        if side == "ours":
            return run_process([str(RUNTIME), "transcribe", str(inputs[0])])
        code = FASTER_PROCESS.format(folder=ct2_folder())
        return run_process([fw_python, "-c", code, str(inputs[0])])
    if side == "ours":
        return run_files(OURS_FILES, sys.executable, inputs)
    code = FASTER_FILES.format(folder=ct2_folder(), batched=batched)
    return run_files(code, fw_python, inputs)


def report(rows: dict, refs: dict) -> None:
    print(
        "\n| task | faster-whisper s (median) | ours s (median) | ratio | per-round ratios "
        "| WER fw / ours | load fw / ours s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, sides in rows.items():
        fw, ours = sides["faster"], sides["ours"]
        ratios = [f["wall"] / o["wall"] for f, o in zip(fw, ours)]
        med_fw = statistics.median(r["wall"] for r in fw)
        med_ours = statistics.median(r["wall"] for r in ours)
        wers = [word_errors(refs[name], s[-1]["texts"]).wer * 100 for s in (fw, ours)]
        loads = [statistics.median(r["load"] for r in s) for s in (fw, ours)]
        print(
            f"| {name} | {med_fw:.2f} | {med_ours:.2f} | {med_fw / med_ours:.2f}x "
            f"| {min(ratios):.2f}-{max(ratios):.2f}x | {wers[0]:.2f}% / {wers[1]:.2f}% "
            f"| {loads[0]:.2f} / {loads[1]:.2f} |"
        )


def compile_ours() -> None:
    """This project's modules to bytecode, as ``pip install`` leaves an installed package."""
    import compileall

    for package in ("runtime", "backends"):
        compileall.compile_dir(REPO / package, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faster-python", required=True, help="a python that has faster-whisper")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"of {', '.join(TASKS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write every round here")
    args = ap.parse_args()
    unknown = [n for n in args.tasks.split(",") if n not in TASKS]
    if unknown:
        ap.error(f"no task {unknown[0]!r}: choose among {', '.join(TASKS)}")
    compile_ours()
    with tempfile.TemporaryDirectory(prefix="bench-vs-faster-") as tmp:
        every = tasks(Path(tmp))
        chosen = args.tasks.split(",")
        rows: dict = {n: {"faster": [], "ours": []} for n in chosen}
        for round_ in range(1, args.rounds + 1):
            for name in chosen:
                inputs, _, batched = every[name]
                for side in ("faster", "ours"):
                    row = measure(name, side, inputs, batched, args.faster_python)
                    rows[name][side].append(row)
                    print(
                        f"round {round_} {name} {side}: {row['wall']:.2f} s "
                        f"(load {row['load']:.2f} s)",
                        flush=True,
                    )
        report(rows, {n: every[n][1] for n in chosen})
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
