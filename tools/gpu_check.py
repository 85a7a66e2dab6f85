"""One prepared check for a lent NVIDIA GPU (issue #21): installs, GPU tests, and one table.

    python tools/gpu_check.py --wheels /path/to/wheelhouse          # a fresh GPU machine
    python tools/gpu_check.py --no-install                          # this python has it all
    python tools/gpu_check.py --cpu --faster-python /work/fwvenv/bin/python   # CPU, small subset

On a GPU it (1) makes a venv (``--venv``) and installs this project with ``onnxruntime-gpu``,
``mlx[cuda]`` and ``faster-whisper`` (from ``--wheels`` when the machine has no network; skipped
with ``--no-install``); (2) runs the GPU checks: the tests of the I/O-bound decoder and the
placement, the nvidia profile's placement on the GPU (no fallback), and MLX on the GPU against
MLX on the CPU (same text); (3) prints one table: the nvidia profile and the MLX backend against
faster-whisper (CTranslate2 CUDA, batched, fp16) on tiny.en and base, on the 15.5-min and 8.4-min
chapters and the 123 LibriSpeech utterances: wall time, real-time factor, WER, peak GPU memory
(nvidia-smi, over the process's baseline), and decoder steps/s at batch 1, 8, 16 and 32.
Every measurement is its own process. Everything goes to one folder (``--out``): the table
(``table.md``), every row (``rows.json``), and the logs.

``--cpu`` runs the same table on the CPU (the cpu profile against faster-whisper int8) on a
small subset, so the script itself is exercised where no GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"
BATCHES = (1, 8, 16, 32)
PACKAGES = ("onnxruntime-gpu", "mlx[cuda]", "faster-whisper")

# A system's transcription of some files, in its own process: JSON on the last stdout line.
OURS = """
import json, sys, time
sys.path.insert(0, {repo!r})
from runtime import Runtime
a = json.loads(sys.argv[1])
rt = Runtime(a["model"], profile=a["profile"], backend=a["backend"],
             backend_options=a["options"]).load()
if a["task"] == "steps":
    from tools.bench_binding import steps_per_s
    rates = {{b: steps_per_s(rt.session, b, a["n_steps"]) for b in a["batches"]}}
    print(json.dumps(dict(steps=rates)))
else:
    t = time.perf_counter()
    texts = [rt.transcribe(p, language="en").text for p in a["files"]]
    print(json.dumps(dict(wall=time.perf_counter() - t, texts=texts)))
"""
FASTER = """
import json, os, sys, time
from faster_whisper import BatchedInferencePipeline, WhisperModel
a = json.loads(sys.argv[1])
model = WhisperModel(a["folder"], device=a["device"], compute_type=a["compute"],
                     cpu_threads=os.cpu_count())
pipeline = BatchedInferencePipeline(model) if a["batched"] else model
kw = dict(batch_size=a["batch"]) if a["batched"] else {}
t = time.perf_counter()
texts = []
for p in a["files"]:
    segments, _ = pipeline.transcribe(p, language="en", beam_size=1, **kw)
    texts.append(" ".join(s.text.strip() for s in segments))
print(json.dumps(dict(wall=time.perf_counter() - t, texts=texts)))
"""


@dataclass
class Row:
    """One line of the table."""

    system: str
    model: str
    task: str
    audio_s: float = 0.0
    wall_s: float | None = None
    wer: float | None = None
    peak_mib: float | None = None
    steps: dict[str, float] = field(default_factory=dict)  # batch -> decoder steps/s
    error: str = ""

    @property
    def rtf(self) -> float | None:
        return self.wall_s / self.audio_s if self.wall_s and self.audio_s else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    """The results as one Markdown table (steps/s on the 'decoder' rows)."""
    head = "| system | model | task | audio s | wall s | RTF | WER % | peak GPU MiB | steps/s "
    head += " / ".join(f"b{b}" for b in BATCHES) + " |"
    lines = [head, "|" + " --- |" * 9]
    for r in rows:
        steps = " / ".join(fmt(r.steps.get(str(b)), ".0f") for b in BATCHES) if r.steps else "-"
        cells = [
            r.system,
            r.model,
            r.task + (f" (failed: {r.error[:80]})" if r.error else ""),
            fmt(r.audio_s or None, ".0f"),
            fmt(r.wall_s, ".2f"),
            fmt(r.rtf, ".4f"),
            fmt(r.wer, ".2f"),
            fmt(r.peak_mib, ".0f"),
            steps,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="the table on the CPU, small subset")
    ap.add_argument("--no-install", action="store_true", help="use this python as it is")
    ap.add_argument("--venv", type=Path, default=REPO / ".gpu-venv")
    ap.add_argument("--wheels", type=Path, default=None, help="install offline from here")
    ap.add_argument("--faster-python", default=None, help="a python with faster-whisper")
    ap.add_argument("--out", type=Path, default=REPO / "gpu-check-results")
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--tasks", default=None, help="default: all (GPU) or a subset (--cpu)")
    ap.add_argument("--systems", default=None, help="ours,mlx,faster (default: all there)")
    ap.add_argument("--n-steps", type=int, default=30)
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per measurement")
    ap.add_argument("--budget", type=float, default=480.0, help="no new measurement after this")
    args = ap.parse_args(argv)
    if args.tasks is None:
        args.tasks = (
            "librispeech-8,decoder" if args.cpu else "chapter-15,chapter-8,librispeech-123,decoder"
        )
    if args.systems is None:
        args.systems = "ours,faster" if args.cpu else "ours,mlx,faster"
    return args


def task_files(name: str) -> tuple[list[Path], list[str], bool]:
    """(inputs, references, faster-whisper batched?) of a task; 'librispeech-N': the first N."""
    sys.path.insert(0, str(REPO))
    from tools.eval_common import load_librispeech, load_longform

    if name.startswith("chapter-"):
        by_size = sorted(load_longform(), key=lambda c: c.audio.stat().st_size)
        chapter = by_size[-1] if name == "chapter-15" else by_size[0]
        return [chapter.audio], [chapter.reference], True
    utts = load_librispeech()[: int(name.split("-")[1])]
    return [u.audio for u in utts], [u.reference for u in utts], False


def duration_s(files: list[Path]) -> float:
    from runtime.audio.decode import load_audio

    return sum(len(load_audio(f)) / 16000 for f in files)


class GpuMemory:
    """Peak GPU memory used while a measurement runs, over the memory used before it
    (nvidia-smi polled every 0.1 s); None without nvidia-smi."""

    def __init__(self) -> None:
        self.peak: float | None = None
        self._stop = threading.Event()
        self._base = self._used()

    @staticmethod
    def _used() -> float | None:
        if shutil.which("nvidia-smi") is None:
            return None
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
        )
        return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout else None

    def __enter__(self) -> GpuMemory:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            used = self._used()
            if used is not None and self._base is not None:
                self.peak = max(self.peak or 0.0, used - self._base)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_json(cmd: list[str], log: Path, timeout: float) -> dict:
    """A worker process's JSON (its last stdout line); its output goes to ``log``."""
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    log.write_text(out.stdout + "\n--- stderr ---\n" + out.stderr, encoding="utf-8")
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ct2_folder(model: str, cache: Path) -> Path:
    """The CTranslate2 folder of a packaged model for faster-whisper; a model shipped in parts
    (``model.bin.part1`` in one package, ``part2`` in the next) is joined once under ``cache``
    (not the results folder, which should stay small enough to send back)."""
    from runtime.model.packaged import PACKAGED_MODELS

    packaged = next(m for m in PACKAGED_MODELS if m.name == model)
    folders = packaged.folders() or []
    if not folders or (folders[0] / "model.bin").exists():
        return folders[0] if folders else Path(model)
    joined = cache / f"ct2-{model}"
    if not (joined / "model.bin").exists():
        joined.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"):
            if (folders[0] / name).exists():
                shutil.copy(folders[0] / name, joined / name)
        parts = sorted(
            (p for f in folders for p in f.glob("model.bin.part*")),
            key=lambda p: int(p.name.rsplit("part", 1)[1]),
        )
        with open(joined / "model.bin", "wb") as whole:
            for part in parts:
                whole.write(part.read_bytes())
    return joined


def worker(system: str, model: str, task: str, files: list[Path], args, python: str) -> list[str]:
    """The command that measures ``system`` on ``files`` (or its decoder steps)."""
    if system == "faster":
        spec = {
            "folder": str(ct2_folder(model, Path(tempfile.gettempdir()) / "gpu-check")),
            "device": "cpu" if args.cpu else "cuda",
            "compute": "int8" if args.cpu else "float16",
            "batched": len(files) == 1,
            "batch": 8 if args.cpu else 16,
            "files": [str(f) for f in files],
        }
        return [args.faster_python or python, "-c", FASTER, json.dumps(spec)]
    spec = {
        "model": model,
        "profile": None if system == "mlx" else ("cpu" if args.cpu else "nvidia"),
        "backend": "mlx" if system == "mlx" else None,
        "options": {"device": "cpu"} if system == "mlx" and args.cpu else {},
        "task": "steps" if task == "decoder" else "files",
        "files": [str(f) for f in files],
        "batches": list(BATCHES),
        "n_steps": args.n_steps,
    }
    return [python, "-c", OURS.format(repo=str(REPO)), json.dumps(spec)]


def measure(system: str, model: str, task: str, args, python: str) -> Row:
    from tools.eval_common import word_errors

    row = Row(system, model, task)
    files, refs = (task_files(task)[:2]) if task != "decoder" else ([], [])
    row.audio_s = duration_s(files) if files else 0.0
    log = args.out / f"{system}-{model}-{task}.log"
    try:
        with GpuMemory() as memory:
            result = run_json(worker(system, model, task, files, args, python), log, args.timeout)
        row.peak_mib = memory.peak
        if "steps" in result:
            row.steps = {str(b): v for b, v in result["steps"].items()}
        else:
            row.wall_s = result["wall"]
            row.wer = word_errors(refs, result["texts"]).wer * 100
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        row.error = str(exc)
    return row


def install(args, notes: list[str]) -> str:
    """The python to measure with: a venv with the GPU packages, or this one (also when the
    install fails, e.g. no network and no wheels: the reason goes to ``notes``)."""
    if args.no_install or args.cpu:
        return sys.executable
    python = str(args.venv / "bin" / "python")
    offline = ["--no-index", "--find-links", str(args.wheels)] if args.wheels else []
    pip = [python, "-m", "pip", "install", "-q", *offline]
    steps = [
        [sys.executable, "-m", "venv", "--system-site-packages", str(args.venv)],
        [*pip, "-e", f"{REPO}[test,base]"],
        [*pip, *PACKAGES],
    ]
    for cmd in steps:
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            notes.append(f"install failed ({' '.join(cmd[-2:])}): {out.stderr.strip()[-300:]}")
            return sys.executable
    notes.append(f"installed {', '.join(PACKAGES)} into {args.venv}")
    return python


# The GPU paths themselves: the profile's placement (strict: a fallback fails), MLX on the
# device against MLX on the CPU.
CHECKS = """
import json, sys
sys.path.insert(0, {repo!r})
from runtime import Runtime
a = json.loads(sys.argv[1])
out = {{}}
rt = Runtime("tiny.en", profile=a["profile"], strict=True).load()
out["placement"] = rt.session.report()
out["text"] = rt.transcribe(a["audio"], language="en").text
try:
    texts = [Runtime("tiny.en", backend="mlx", backend_options=dict(device=d)).load()
             .transcribe(a["audio"], language="en").text for d in ("gpu", "cpu")]
    out["mlx"] = "same text on gpu and cpu" if texts[0] == texts[1] else f"differ: {{texts}}"
except Exception as exc:
    out["mlx"] = f"not run: {{exc}}"
print(json.dumps(out))
"""


def device_checks(args, python: str) -> list[str]:
    """The profile's placement lines (strict) and MLX GPU-against-CPU text, as note lines."""
    spec = {"profile": "cpu" if args.cpu else "nvidia", "audio": str(EVAL / "jfk.flac")}
    cmd = [python, "-c", CHECKS.format(repo=str(REPO)), json.dumps(spec)]
    try:
        result = run_json(cmd, args.out / "device-checks.log", args.timeout)
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        return [f"device checks failed: {exc}"]
    return [f"placement ({spec['profile']}, strict): {line}" for line in result["placement"]] + [
        f"mlx: {result['mlx']}"
    ]


def gpu_tests(args, python: str) -> list[str]:
    """The tests that exercise the GPU paths (on the CPU with --cpu): one line per suite."""
    suites = ["tests/test_onnx_binding.py", "tests/test_onnx_placement.py"]
    if not args.cpu:
        suites.append("tests/test_mlx_backend.py")
    lines = []
    for suite in suites:
        out = subprocess.run(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        (args.out / f"pytest-{Path(suite).stem}.log").write_text(out.stdout + out.stderr)
        tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "no output"
        lines.append(f"{suite}: {tail}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    notes: list[str] = []
    python = install(args, notes)
    notes += [] if args.skip_tests else gpu_tests(args, python) + device_checks(args, python)
    rows = []
    for model in args.models.split(","):
        for task in args.tasks.split(","):
            for system in args.systems.split(","):
                if task == "decoder" and system == "faster":
                    continue  # CTranslate2 has no per-step API to time
                if time.perf_counter() - start > args.budget:
                    rows.append(
                        Row(system, model, task, error=f"skipped: {args.budget:.0f} s budget spent")
                    )
                    continue
                row = measure(system, model, task, args, python)
                rows.append(row)
                print(
                    f"{system} {model} {task}: wall {fmt(row.wall_s, '.2f')} s {row.error[:120]}",
                    flush=True,
                )
    text = table(rows)
    where = "CPU (--cpu)" if args.cpu else "GPU"
    report = "\n".join([f"# gpu_check on {where}", "", *(f"- {n}" for n in notes), "", text, ""])
    report += f"\ntotal {time.perf_counter() - start:.0f} s; command: {' '.join(sys.argv)}\n"
    (args.out / "table.md").write_text(report, encoding="utf-8")
    (args.out / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(report)
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
