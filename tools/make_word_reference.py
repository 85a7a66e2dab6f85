"""openai-whisper's word timestamps on the project's tiny.en weights, stored as a test fixture.

Runs in the reference venv (see ``tools/make_reference.py``), from the repo root:

    /work/refvenv/bin/python tools/make_word_reference.py     # -> tests/fixtures/words_tiny_en.json

For every LibriSpeech utterance of ``../shared/eval/librispeech`` (and JFK), the audio as
``tools.eval_common.decode_audio`` reads it (its sha256 is stored, so the test can check it read
the same samples) goes through ``whisper.transcribe(model, audio, language="en",
word_timestamps=True, fp16=False)`` with every other option at its default (temperature fallback,
conditioning on previous text). Stored per utterance: the text, and per segment its start, end,
text and words as ``[word, start, end, probability]`` (times rounded to 0.01 s by whisper).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import (
    REPO_ROOT,
    audio_sha256,
    decode_audio,  # noqa: E402
    load_jfk,
    load_librispeech,
)
from tools.make_reference import build_whisper  # noqa: E402

OUT = REPO_ROOT / "tests/fixtures/words_tiny_en.json"


def transcribe_words(model, audio) -> dict:
    import whisper

    result = whisper.transcribe(
        model, audio, language="en", word_timestamps=True, fp16=False, verbose=None
    )
    return {
        "text": result["text"],
        "segments": [
            {
                "start": s["start"],
                "end": s["end"],
                "text": s["text"],
                "words": [
                    [w["word"], w["start"], w["end"], round(float(w["probability"]), 4)]
                    for w in s.get("words", [])
                ],
            }
            for s in result["segments"]
        ],
    }


def set_alignment_heads(model, heads, name: str) -> None:
    """Whisper() built from dimensions aligns on every head of the last half of the layers;
    the published checkpoints carry tuned heads (whisper._ALIGNMENT_HEADS), which the project's
    model files carry too. Use those, after checking both agree."""
    import numpy as np
    import torch
    import whisper

    if name in whisper._ALIGNMENT_HEADS:
        model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
        published = model.alignment_heads.indices().T.tolist()
        if heads and sorted(map(list, heads)) != sorted(published):
            raise SystemExit(f"alignment heads differ: model files {heads}, openai {published}")
    elif heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        mask[tuple(np.asarray(heads).T)] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)


def main(argv: list[str] | None = None) -> None:
    import torch
    import whisper

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--limit", type=int, default=None, help="first N utterances only")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    m, model = build_whisper(args.model)
    set_alignment_heads(model, m.alignment_heads, args.model)
    utterances = load_librispeech() + [load_jfk()]
    records = []
    t0 = time.perf_counter()
    for utt in utterances[: args.limit]:
        audio = decode_audio(utt.audio)
        record = {
            "utt_id": utt.utt_id,
            "subset": utt.subset,
            "audio_sha256_float32": audio_sha256(audio),
            **transcribe_words(model, audio),
        }
        records.append(record)
        print(f"{utt.utt_id:18s} {record['text']}", flush=True)
    header = {
        "description": "openai-whisper word_timestamps=True on the project's tiny.en weights",
        "script": "tools/make_word_reference.py",
        "command": "/work/refvenv/bin/python tools/make_word_reference.py",
        "openai_whisper_version": whisper.__version__,
        "torch_version": torch.__version__,
        "model": args.model,
        "alignment_heads": model.alignment_heads.indices().T.tolist(),
        "options": "whisper.transcribe(model, audio, language='en', word_timestamps=True, "
        "fp16=False); other options at their defaults",
        "words": "[word, start, end, probability] per word; seconds from the file's start",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"header": header, "utterances": records}, ensure_ascii=False, separators=(",", ":")
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out} ({len(records)} utterances)")


if __name__ == "__main__":
    main()
