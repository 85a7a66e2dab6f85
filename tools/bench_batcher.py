"""Sequential vs batched transcription, side by side in one run: stage times, speed, WER, coverage.

    python tools/bench_batcher.py                                # both long-form chapters
    python tools/bench_batcher.py \
        --files ../shared/eval/longform/librispeech-118-47824_abandoned-room-ch13.flac \
        --modes sequential,batched --batch-size 8

Modes: ``sequential`` (the reference long-form path), ``batched`` (the default path, the next block
prepared in a thread while the encoder and decoder work) and ``batched-serial`` (the same without
that thread: its stage sum is the "without overlap" figure to set against ``batched``'s wall time).
For each file and mode it prints wall time, real-time factor, WER against the reference, the time
per stage (decode audio, VAD, mel, encoder, decoder, post-processing) and "dropped": reference
segments (from ``<name>.segments.tsv``) of which more than half the words are missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import load_longform, normalize_text, word_errors  # noqa: E402


def dropped_segments(segments, hyp_text: str) -> list[str]:
    """Reference segments with more than half their words deleted in the global alignment."""
    import jiwer

    ref_words, owner = [], []
    for i, seg in enumerate(segments):
        words = normalize_text(seg.reference).split()
        ref_words += words
        owner += [i] * len(words)
    hyp = normalize_text(hyp_text) or "<empty>"
    out = jiwer.process_words(" ".join(ref_words), hyp)
    deleted = [0] * len(segments)
    for chunk in out.alignments[0]:
        if chunk.type == "delete":
            for k in range(chunk.ref_start_idx, chunk.ref_end_idx):
                deleted[owner[k]] += 1
    totals = [owner.count(i) for i in range(len(segments))]
    return [s.utt_id for s, d, n in zip(segments, deleted, totals) if n and d / n > 0.5]


def run(rt, path: Path, mode: str, batch_size: int, chunking: str) -> tuple[object, float]:
    t = time.perf_counter()
    if mode == "batched-serial":  # no preparing thread: the stages take turns
        from runtime.pipeline.runner import BatchRunner
        from runtime.pipeline.scheduler import Scheduler, run_to_completion
        from runtime.pipeline.source import SourceRun

        options = rt.transcribe_options()
        batch = dataclasses.replace(rt.batch_options(batch_size, chunking), prepare_ahead=False)
        source = SourceRun(rt.session, rt.tokenizer, options, batch, path, "en")
        runner = BatchRunner(rt.session, rt.tokenizer, rt.capabilities, batch)
        run_to_completion(Scheduler(batch), runner, source)
        wall = time.perf_counter() - t
        timings = dict(source.clock.merged(runner.clock), total=wall)
        return rt.make_transcription(
            source.ordered_segments(), "en", source.duration, timings
        ), wall
    result = rt.transcribe(
        path, sequential=(mode == "sequential"), batch_size=batch_size, chunking=chunking
    )
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=None)
    ap.add_argument("--modes", default="sequential,batched")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunking", default="vad", choices=("vad", "fixed"))
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--backend", default=None, help="default: the profile's backend")
    ap.add_argument("--profile", default=None, help="default: the one detect chooses")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()

    from runtime import Runtime

    rt = Runtime(args.model, profile=args.profile, backend=args.backend, precision=args.precision)
    rt.load()  # once, outside the timings
    chapters = {c.audio.resolve(): c for c in load_longform()}
    files = args.files or list(chapters)
    rows = []
    print("| file | mode | wall s | x real time | WER % | dropped | stage sum s | stages (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in files:
        chapter = chapters.get(Path(path).resolve())
        for mode in args.modes.split(","):
            result, wall = run(rt, Path(path), mode, args.batch_size, args.chunking)
            wer = dropped = None
            if chapter:
                wer = word_errors(chapter.reference, result.text).wer * 100
                dropped = dropped_segments(chapter.segments, result.text)
            stages = {k: round(v, 2) for k, v in result.timings.items()}
            stage_sum = round(sum(v for k, v in result.timings.items() if k != "total"), 2)
            row = dict(
                file=Path(path).name,
                mode=mode,
                batch_size=args.batch_size,
                chunking=args.chunking,
                wall_s=round(wall, 2),
                realtime=round(result.duration / wall, 2),
                wer=None if wer is None else round(wer, 2),
                dropped=dropped,
                stages=stages,
                stage_sum=stage_sum,
            )
            rows.append(row)
            print(
                f"| {row['file'][:40]} | {mode} | {row['wall_s']} | {row['realtime']} | "
                f"{row['wer']} | {len(dropped) if dropped is not None else '-'} | {stage_sum} | "
                f"{stages} |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
