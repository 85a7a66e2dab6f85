"""Verify a hardware profile on this machine and write a report to send back.

    python tools/check_accelerator.py --profile xdna2                  # on a Ryzen AI laptop
    python tools/check_accelerator.py --profile intel-npu --emulate    # on its stand-in
    python tools/check_accelerator.py --profile qualcomm-npu --emulate --sets jfk,test-clean
    python tools/check_accelerator.py --compare intel-npu:8,intel-npu:1:seq --emulate --rounds 2

One run loads the profile's model strictly by default (a provider that fails to start, or
leaves the NPU's nodes to the CPU, stops the check with the reason; ``--no-strict`` measures the
fallback instead) and reports: versions (Python, the onnxruntime build, plugin EPs), EP devices,
what the hardware probes found, where each graph really runs (the EP's own report), per-stage
times, speed and WER on jfk.flac, LibriSpeech test-clean and the 8.4-min chapter
(``../shared/eval``; ``--sets`` chooses). The report goes to stdout and, as JSON and Markdown,
to ``--out`` (default ``accelerator-report-<profile>``).

``--compare`` runs several configurations (``profile:batch[:mode]``; mode ``batched``, the default,
``one-by-one`` (rows decoded one at a time, as NPU profiles did before batching) or ``longform``
(the sequential reference path)) side by side, each in its own process, rounds interleaved, and
prints every round.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_jfk, load_librispeech, load_longform, word_errors  # noqa: E402

SETS = ("jfk", "test-clean", "test-other", "chapter", "chapter-15")
SHORT_CHAPTER = "northanger"  # the 8.4-min chapter


def items(sets: list[str]):
    """(set, path, reference, duration) of every file of the chosen sets."""
    for name in sets:
        if name == "jfk":
            jfk = load_jfk()
            yield name, jfk.audio, jfk.reference, jfk.duration_s
        elif name in ("test-clean", "test-other"):
            for u in load_librispeech([name]):
                yield name, u.audio, u.reference, u.duration_s
        elif name in ("chapter", "chapter-15"):
            for c in load_longform():
                if (SHORT_CHAPTER in c.name) == (name == "chapter"):
                    yield name, c.audio, c.reference, c.duration_s
        else:
            raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")


def environment(settings) -> dict:
    """Versions, EP devices and hardware findings, as `runtime detect --json` has them."""
    from runtime.detect import detect
    from runtime.plugins import Plugins

    data = detect(settings, Plugins(), load=False)
    ort = data["hardware"].get("onnxruntime", {}).get("details", {})
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "onnxruntime": ort,
        "hardware": data["hardware"],
        "profiles": data["profiles"],
        "chosen": data["chosen"],
    }


def check(args: argparse.Namespace) -> dict:
    from runtime import Runtime
    from runtime.config.settings import Settings

    settings = Settings(
        profile=args.profile,
        emulate=args.emulate,
        strict=args.strict,
        profile_dirs=args.profile_dir,
        batch={"decoder": "sequential"} if args.one_by_one else {},
    )
    report = {
        "profile": args.profile,
        "emulate": args.emulate,
        "batch_size": args.batch_size,
        "sequential": args.sequential,
        "one_by_one": args.one_by_one,
        "environment": environment(settings),
    }
    t = time.perf_counter()
    rt = Runtime(args.model, settings=settings)
    session = rt.session
    report["load_s"] = round(time.perf_counter() - t, 2)
    report["selection"] = {
        "profile": rt.selection.profile.name if rt.selection else None,
        "emulation": rt.selection.emulation if rt.selection else None,
        "fallback_note": rt.selection.fallback_note if rt.selection else None,
    }
    lines = session.report() if callable(getattr(session, "report", None)) else [session.describe()]
    report["placement"] = lines
    refs, hyps = defaultdict(list), defaultdict(list)
    wall, audio = defaultdict(float), defaultdict(float)
    stages: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, path, reference, duration in items(args.sets.split(",")):
        t = time.perf_counter()
        result = rt.transcribe(path, batch_size=args.batch_size, sequential=args.sequential)
        wall[name] += time.perf_counter() - t
        audio[name] += duration
        refs[name].append(reference)
        hyps[name].append(result.text)
        report.setdefault("texts", {})[Path(path).stem] = result.text.strip()
        for stage, seconds in result.timings.items():
            stages[name][stage] += seconds
        if name == "jfk":
            report["jfk_text"] = result.text.strip()
    report["sets"] = {
        name: {
            "files": len(refs[name]),
            "audio_s": round(audio[name], 1),
            "wall_s": round(wall[name], 2),
            "x_realtime": round(audio[name] / wall[name], 1),
            "wer": round(100 * word_errors(refs[name], hyps[name]).wer, 2),
            "stages_s": {k: round(v, 2) for k, v in stages[name].items()},
        }
        for name in refs
    }
    return report


def markdown(report: dict) -> str:
    env = report["environment"]
    ort = env["onnxruntime"]
    out = [
        f"# {report['profile']}{' (emulated)' if report['emulate'] else ''} on {env['platform']}",
        "",
        f"- Python {env['python']}, {env['machine']}; onnxruntime {ort.get('version')} "
        f"({ort.get('build')}); plugins: {', '.join(ort.get('plugins', [])) or 'none'}",
        f"- EP devices: {', '.join(ort.get('ep_devices', [])) or 'none'}",
    ]
    if ort.get("conflict_reason"):
        out.append(f"- **conflict**: {ort['conflict_reason']}")
    for name, finding in env["hardware"].items():
        if finding["present"] or name in ("amd_npu", "intel_npu", "qualcomm_npu", "nvidia"):
            state = "found" if finding["present"] else f"not found: {finding['reason']}"
            out.append(f"- {name}: {state} {finding['details'] if finding['present'] else ''}")
    sel = report.get("selection", {})
    for key in ("emulation", "fallback_note"):
        if sel.get(key):
            out.append(f"- {sel[key]}")
    out += ["", f"Loaded in {report.get('load_s')} s:", ""]
    out += [f"    {line}" for line in report.get("placement", [])]
    mode = (
        "sequential"
        if report["sequential"]
        else f"{'one by one' if report.get('one_by_one') else 'batched'}, "
        f"B={report['batch_size'] or 'profile'}"
    )
    out += [
        "",
        f"| set ({mode}) | files | audio s | wall s | x real time | WER % | stages (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in report.get("sets", {}).items():
        out.append(
            f"| {name} | {s['files']} | {s['audio_s']} | {s['wall_s']} | "
            f"{s['x_realtime']} | {s['wer']} | {s['stages_s']} |"
        )
    if report.get("jfk_text"):
        out += ["", f"jfk: {report['jfk_text']}"]
    return "\n".join(out)


def compare(args: argparse.Namespace) -> None:
    """Each configuration in its own process, rounds interleaved; every round printed."""
    configs = [c.split(":") for c in args.compare.split(",")]
    rows = []
    print("| round | profile | batch | mode | set | wall s | x real time | WER % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for round_no in range(1, args.rounds + 1):
        for profile, batch, *rest in configs:
            mode = rest[0] if rest else "batched"
            out = Path(f"/tmp/check-{profile}-{batch}-{mode}-{round_no}")
            cmd = [
                sys.executable,
                __file__,
                "--profile",
                profile,
                "--batch-size",
                batch,
                "--sets",
                args.sets,
                "--out",
                str(out),
                "--model",
                args.model,
                "--quiet",
            ]
            cmd += {"longform": ["--sequential"], "one-by-one": ["--one-by-one"]}.get(mode, [])
            cmd += ["--emulate"] if args.emulate and profile != "cpu" else []
            cmd += [] if args.strict else ["--no-strict"]
            cmd += [arg for d in args.profile_dir for arg in ("--profile-dir", str(d))]
            subprocess.run(cmd, check=True)
            report = json.loads(out.with_suffix(".json").read_text())
            for name, s in report["sets"].items():
                rows.append((round_no, profile, batch, mode, name, s))
                print(
                    f"| {round_no} | {profile} | {batch} | {rows[-1][3]} | {name} | "
                    f"{s['wall_s']} | {s['x_realtime']} | {s['wer']} |",
                    flush=True,
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="auto")
    ap.add_argument("--emulate", action="store_true", help="run the profile on its stand-in")
    ap.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="measure a fallback instead of stopping at it",
    )
    ap.add_argument("--sets", default="jfk,test-clean,chapter", help=", ".join(SETS))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    ap.add_argument("--sequential", action="store_true", help="the sequential reference path")
    ap.add_argument(
        "--one-by-one",
        action="store_true",
        help="decode the rows of each batch one at a time (decoder = sequential)",
    )
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument(
        "--profile-dir",
        type=Path,
        action="append",
        default=[],
        help="another folder of profiles (repeatable)",
    )
    ap.add_argument("--out", type=Path, default=None, help="report path without suffix")
    ap.add_argument("--compare", default=None, help="profile:batch[:seq],... side by side")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="no report on stdout")
    args = ap.parse_args()
    if args.compare:
        compare(args)
        return
    from runtime.errors import WhisperRuntimeError

    try:
        report = check(args)
    except WhisperRuntimeError as exc:
        raise SystemExit(f"check failed: {exc}") from None
    out = args.out or Path(f"accelerator-report-{args.profile}")
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    if not args.quiet:
        print(markdown(report))
        print(
            f"\nreport written to {out.with_suffix('.json')} and {out.with_suffix('.md')}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
