"""The local job vs the same job on Ray, side by side: wall time, ratio, words that differ.

    python tools/bench_ray.py                          # 123 utterances + the 2 chapters, 1 round
    python tools/bench_ray.py --rounds 2 --order ray,local
    python tools/bench_ray.py --workers 1 --cpus 2     # one actor holding both CPUs
    python tools/bench_ray.py --limit 20 --no-longform
    python tools/bench_ray.py --driver-costs 100000    # the driver's own work per input

Both jobs are ``runtime.job.transcribe_job`` over the same inputs (the LibriSpeech utterances
of ../shared/eval and its long-form chapters) into fresh output folders, txt format. "local"
uses one loaded ``Runtime`` in this process (one ``transcribe_many`` call); "ray" runs on a local
Ray instance started once before the rounds (its start is timed and shown apart), so each ray
round includes starting the actor pool and loading the model in every actor, as a real job
does. Then every output is compared: the number of words that differ between the two
(normalised), and the inputs that differ. The machine is shared: say so beside any number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench_many import word_diffs
from tools.eval_common import load_librispeech, load_longform


def run_job(mode: str, inputs: list[str], out: Path, rt, options: dict) -> tuple[float, object]:
    from runtime.job import transcribe_job

    cluster = "ray" if mode == "ray" else None
    t = time.perf_counter()
    summary = transcribe_job(
        inputs, out, runtime=rt, cluster=cluster, cluster_options=options, progress=False
    )
    return time.perf_counter() - t, summary


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """Words that differ over every output of ``a`` against ``b``, and the files that differ."""
    total, files = 0, []
    for left in sorted(a.rglob("*.txt")):
        right = b / left.relative_to(a)
        hyp = right.read_text() if right.exists() else ""
        edits, shown = word_diffs(left.read_text(), hyp)
        if edits:
            total += edits
            files.append(f"{left.name}: {'; '.join(shown[:3])}")
    return total, files


def driver_costs(n_files: int, utterances: list[str]) -> dict:
    """What the driver alone does per input, timed here (the limits of a big job): list and
    plan ``n_files`` empty files in 100 folders and check their outputs (resume); read one
    file's duration (the progress bar's total); write one txt output; the bytes a worker sends
    back per second of audio (a pickled Transcription)."""
    import pickle

    from runtime.api import Runtime
    from runtime.audio.decode import audio_duration
    from runtime.output.jobs import Job, collect_inputs, plan_outputs
    from runtime.output.writers import TextWriter

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_files):
            folder = Path(tmp, "in", f"d{i % 100}")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i}.flac").touch()
        t = time.perf_counter()
        inputs, _ = collect_inputs([str(Path(tmp, "in"))])
        items = plan_outputs(inputs, Path(tmp, "out"), ["txt"])
        todo = Job(items, {"txt": TextWriter}).todo()
        plan_s = time.perf_counter() - t
        assert len(todo) == n_files
        t = time.perf_counter()
        durations = [audio_duration(u) for u in utterances]
        duration_ms = 1000 * (time.perf_counter() - t) / len(utterances)
        results = [Runtime("tiny.en").transcribe(u) for u in utterances[:8]]
        t = time.perf_counter()
        for i in range(2000):
            TextWriter().write_to_dir(results[i % 8], Path(tmp, "w", f"d{i % 100}"), f"f{i}")
        write_ms = 1000 * (time.perf_counter() - t) / 2000
    sent = sum(len(pickle.dumps(r)) for r in results) / sum(r.duration for r in results)
    return dict(
        files=n_files,
        plan_us_per_file=round(1e6 * plan_s / n_files, 1),
        duration_ms_per_file=round(duration_ms, 2),
        write_ms_per_output=round(write_ms, 3),
        result_bytes_per_audio_s=round(sent),
        audio_s=round(sum(d or 0 for d in durations), 1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances only")
    ap.add_argument("--no-longform", action="store_true", help="leave the chapters out")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--order", default="local,ray", help="which job goes first in a round")
    ap.add_argument("--workers", type=int, default=None, help="Ray actors (default: as fit)")
    ap.add_argument("--cpus", type=float, default=None, help="CPUs per actor")
    ap.add_argument("--files-per-task", type=int, default=None)
    ap.add_argument("--num-cpus", type=int, default=None, help="the local instance's CPUs")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument(
        "--driver-costs",
        type=int,
        default=None,
        metavar="N",
        help="only time the driver's own work per input (N synthetic files to list) and exit",
    )
    args = ap.parse_args()
    if args.driver_costs:
        utterances = [str(u.audio) for u in load_librispeech()[:40]]
        print(json.dumps(driver_costs(args.driver_costs, utterances)))
        return

    import ray

    from runtime.api import Runtime

    inputs = [str(u.audio) for u in load_librispeech()[: args.limit]]
    if not args.no_longform:
        inputs += [str(f.audio) for f in load_longform()]
    options = {
        k: v
        for k, v in dict(
            workers=args.workers, cpus=args.cpus, files_per_task=args.files_per_task
        ).items()
        if v is not None
    }
    rt = Runtime(args.model).load()
    t = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - t
    print(f"{len(inputs)} inputs; ray.init {ray_init_s:.1f} s; options {options}", flush=True)
    rows = []
    for round_no in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            walls, audio_h = {}, 0.0
            for mode in args.order.split(","):
                wall, summary = run_job(mode, inputs, Path(tmp, mode), rt, options)
                walls[mode] = wall
                assert not summary.failed, summary.render()
                audio_h = sum(s for _, s in summary.done) / 3600
            words, files = compare(Path(tmp, "local"), Path(tmp, "ray"))
        row = dict(
            round=round_no,
            audio_h=round(audio_h, 3),
            local_s=round(walls["local"], 2),
            ray_s=round(walls["ray"], 2),
            ratio=round(walls["ray"] / walls["local"], 3),
            words_differ=words,
            files_differ=files,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps(dict(ray_init_s=ray_init_s, rounds=rows), indent=1))


if __name__ == "__main__":
    main()
