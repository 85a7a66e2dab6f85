"""Many files in one call vs one by one, side by side in one run: wall time, speed ratio, WER.

    python tools/bench_many.py                      # all 123 LibriSpeech utterances, profile cpu
    python tools/bench_many.py --backend cpu        # the numpy backend
    python tools/bench_many.py --limit 20 --batch-size 16 --order many,single

Both runs use one ``Runtime`` (same backend, model, options and batch size), loaded and warmed up
on one utterance before any timing. "single" calls ``Runtime.transcribe`` on each utterance in
turn; "many" passes them all to one ``Runtime.transcribe_many`` call. For each it prints wall
time, audio seconds per wall second, corpus WER, and where the time went: stage totals (audio
decode, VAD, mel, encoder, decoder) summed over the inputs, and for "many" the engine's batch
count, mean batch size and busy time. Then the utterances whose normalised text differs between
the two, with the words that differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import LIBRISPEECH_SUBSETS, load_librispeech, normalize_text, word_errors  # noqa: E402,E501


def _stage_totals(results) -> dict[str, float]:
    totals: dict[str, float] = {}
    for r in results:
        for stage, seconds in r.timings.items():
            if stage != "total":
                totals[stage] = totals.get(stage, 0.0) + seconds
    return {k: round(v, 2) for k, v in sorted(totals.items())}


def run_single(rt, paths, batch_size: int | None) -> tuple[list, float, dict]:
    t = time.perf_counter()
    results = [rt.transcribe(p, batch_size=batch_size) for p in paths]
    wall = time.perf_counter() - t
    return results, wall, {"stages_s": _stage_totals(results)}


def run_many(rt, paths, batch_size: int | None) -> tuple[list, float, dict]:
    """One ``transcribe_many`` call; the engine it builds is kept to read its stats after."""
    engines = []
    make_engine = rt.engine

    def recording_engine(**kwargs):  # the same engine, remembered for its stats
        engines.append(make_engine(**kwargs))
        return engines[-1]

    rt.engine = recording_engine
    try:
        t = time.perf_counter()
        out = list(rt.transcribe_many(paths, batch_size=batch_size))
        wall = time.perf_counter() - t
    finally:
        del rt.engine
    failed = [f"{r.source}: {r.error}" for r in out if not r.ok]
    if failed:
        raise SystemExit("transcribe_many failed on: " + "; ".join(failed))
    results = [r.transcription for r in out]
    extra: dict = {"stages_s": _stage_totals(results)}
    if engines:
        stats = engines[0].stats()
        extra["engine"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
        extra["scheduler_s"] = {
            k: round(v, 2) for k, v in engines[0].scheduler.clock.totals.items()
        }
    return results, wall, extra


def word_diffs(a: str, b: str) -> tuple[int, list[str]]:
    """Words that differ between two hypotheses (edits aligning ``b`` to ``a``), with context."""
    import jiwer

    a, b = normalize_text(a) or "<empty>", normalize_text(b) or "<empty>"
    out = jiwer.process_words(a, b)
    edits = out.substitutions + out.deletions + out.insertions
    aw, bw, shown = a.split(), b.split(), []
    for chunk in out.alignments[0]:
        if chunk.type != "equal":
            shown.append(
                f"{' '.join(aw[chunk.ref_start_idx : chunk.ref_end_idx]) or '-'} -> "
                f"{' '.join(bw[chunk.hyp_start_idx : chunk.hyp_end_idx]) or '-'}"
            )
    return edits, shown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--profile", default=None, help="default: the one `runtime detect` chooses")
    ap.add_argument("--backend", default=None, help="force a backend (cpu = numpy)")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    ap.add_argument("--subsets", default=",".join(LIBRISPEECH_SUBSETS))
    ap.add_argument("--limit", type=int, default=None, help="first N utterances only")
    ap.add_argument("--order", default="single,many", help="which run goes first")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args()

    from runtime import Runtime

    utts = load_librispeech(args.subsets.split(","))[: args.limit]
    paths = [u.audio for u in utts]
    refs = [u.reference for u in utts]
    audio_s = sum(u.duration_s for u in utts)
    rt = Runtime(args.model, profile=args.profile, backend=args.backend, precision=args.precision)
    rt.transcribe(paths[0], batch_size=args.batch_size)  # load and warm up outside the timings
    batch = rt.batch_options(args.batch_size)
    print(
        f"{len(utts)} utterances, {audio_s:.1f} s of audio; backend {rt.backend_name} "
        f"({rt.session.describe()}), profile "
        f"{rt.selection.profile.name if rt.selection else '-'}, batch size {batch.batch_size}",
        flush=True,
    )
    runners = {"single": run_single, "many": run_many}
    rows, texts = {}, {}
    for mode in args.order.split(","):
        results, wall, extra = runners[mode](rt, paths, args.batch_size)
        texts[mode] = [r.text for r in results]
        errors = word_errors(refs, texts[mode])
        rows[mode] = dict(
            wall_s=round(wall, 2),
            x_realtime=round(audio_s / wall, 1),
            wer_pct=round(100 * errors.wer, 3),
            word_errors=errors.errors,
            ref_words=errors.ref_words,
            **extra,
        )
        print(
            f"{mode:6}  {wall:7.2f} s  {audio_s / wall:6.1f}x real time  "
            f"WER {100 * errors.wer:.3f}% ({errors.errors}/{errors.ref_words})  "
            f"{json.dumps(extra)}",
            flush=True,
        )
    if {"single", "many"} <= rows.keys():
        ratio = rows["single"]["wall_s"] / rows["many"]["wall_s"]
        print(f"speed ratio single/many: {ratio:.2f}x")
        differing = 0
        for u, a, b in zip(utts, texts["single"], texts["many"]):
            edits, shown = word_diffs(a, b)
            if edits:
                differing += edits
                print(f"  {u.utt_id}: {edits} word(s) differ: {'; '.join(shown)}")
        pairs = list(zip(texts["single"], texts["many"]))
        print(
            f"words differing between single and many: {differing} "
            f"(in {sum(normalize_text(a) != normalize_text(b) for a, b in pairs)}"
            f" of {len(utts)} utterances)"
        )
        rows["ratio"], rows["words_differing"] = round(ratio, 2), differing
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
