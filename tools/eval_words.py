"""Word timestamps measured: parity with openai-whisper, and segment edges on the chapters.

    python tools/eval_words.py                      # parity, all fixture utterances, cpu backend
    python tools/eval_words.py --backend onnx --precision int8
    python tools/eval_words.py --longform           # segment-edge error vs *.segments.tsv

Parity: every utterance of ``tests/fixtures/words_tiny_en.json`` (openai-whisper's
``word_timestamps=True`` on the same tiny.en weights, ``tools/make_word_reference.py``) is
transcribed with ``word_timestamps=True`` on the sequential and the batched path. Where the
decoded text equals openai-whisper's, every word's |start diff| and |end diff| counts; the
median and 95th percentile are reported (the test's bounds: 0.1 s and 0.3 s). Also over the
words both transcripts share (a word-sequence alignment), which is how the batched path is
compared: its VAD-cut windows decode the same words with a different text more often.

Segment edges: each reference segment of a chapter (LibriSpeech's own cut, which includes its
leading and trailing silence) is matched to the predicted segment boundary nearest to it; the
distribution of |predicted - reference| is reported for starts and ends, with and without word
timestamps (which move segment edges to the first and last word).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_common import (
    REPO_ROOT,
    audio_sha256,
    decode_audio,
    eval_dir,  # noqa: E402
    load_longform,
)

FIXTURE = REPO_ROOT / "tests/fixtures/words_tiny_en.json"


def audio_of(utt: dict) -> np.ndarray:
    """The utterance's samples, checked to be the ones the fixture was made from."""
    name = "jfk.flac" if utt["utt_id"] == "jfk" else f"librispeech/{utt['utt_id']}.flac"
    audio = decode_audio(eval_dir() / name)
    if audio_sha256(audio) != utt["audio_sha256_float32"]:
        raise ValueError(f"{name}: decoded samples differ from the fixture's")
    return audio


def transcribe_words(rt, utt: dict, sequential: bool) -> list[tuple[str, float, float]]:
    result = rt.transcribe(audio_of(utt), word_timestamps=True, sequential=sequential)
    return [(w.word, w.start, w.end) for s in result.segments for w in s.words or ()]


def reference_words(utt: dict) -> list[tuple[str, float, float]]:
    return [(w[0], w[1], w[2]) for s in utt["segments"] for w in s["words"]]


def compare_words(ours: list[tuple[str, float, float]], utt: dict) -> list[float] | None:
    """|start diff| and |end diff| of every word when the words are openai-whisper's; else None."""
    theirs = reference_words(utt)
    if [w for w, _, _ in ours] != [w for w, _, _ in theirs]:
        return None
    return [abs(a - b) for x, y in zip(ours, theirs) for a, b in ((x[1], y[1]), (x[2], y[2]))]


def matched_word_diffs(ours: list[tuple[str, float, float]], utt: dict) -> tuple[list[float], int]:
    """|start diff| and |end diff| of the words both transcripts share (the equal runs of a
    word-sequence alignment), and how many reference words there are. The batched path cuts
    windows where the VAD hears speech, so its text differs from openai-whisper's more often
    than the sequential path's; its shared words are still the same decoded text."""
    from difflib import SequenceMatcher

    theirs = reference_words(utt)
    matcher = SequenceMatcher(
        None, [w for w, _, _ in ours], [w for w, _, _ in theirs], autojunk=False
    )
    diffs = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            x, y = ours[block.a + k], theirs[block.b + k]
            diffs += [abs(x[1] - y[1]), abs(x[2] - y[2])]
    return diffs, len(theirs)


def _summary(d: np.ndarray) -> str:
    return (
        f"{len(d) // 2} words; |diff| median {np.median(d):.3f} s, p95 "
        f"{np.percentile(d, 95):.3f} s, max {d.max():.2f} s, <= 0.02 s {np.mean(d <= 0.02):.1%}"
    )


def parity(rt, utterances: list[dict], paths: tuple[bool, ...] = (True, False)) -> None:
    for sequential in paths:
        same_text, matched, n_ref, same, t0 = [], [], 0, 0, time.perf_counter()
        for utt in utterances:
            ours = transcribe_words(rt, utt, sequential)
            d = compare_words(ours, utt)
            if d is not None:
                same_text += d
                same += 1
            m, n = matched_word_diffs(ours, utt)
            matched += m
            n_ref += n
        path = "sequential" if sequential else "batched"
        print(
            f"{path} ({time.perf_counter() - t0:.0f} s)\n"
            f"  same text ({same}/{len(utterances)} utterances): "
            f"{_summary(np.array(same_text)) if same_text else '-'}\n"
            f"  shared words ({len(matched) // 2}/{n_ref} of openai-whisper's): "
            f"{_summary(np.array(matched))}"
        )


def edge_errors(predicted: list[float], reference: list[float]) -> np.ndarray:
    """|nearest predicted boundary - reference boundary| for every reference boundary."""
    p = np.sort(np.asarray(predicted))
    r = np.asarray(reference)
    idx = np.clip(np.searchsorted(p, r), 1, len(p) - 1)
    return np.minimum(np.abs(p[idx - 1] - r), np.abs(p[idx] - r))


def _stats(e: np.ndarray) -> str:
    q = np.percentile(e, [25, 50, 75, 90])
    return (
        f"p25 {q[0]:.2f} median {q[1]:.2f} p75 {q[2]:.2f} p90 {q[3]:.2f} "
        f"max {e.max():.2f} s; within 0.5 s {np.mean(e <= 0.5):.0%}"
    )


def longform(rt) -> None:
    for chapter in load_longform():
        for words in (False, True):
            result = rt.transcribe(chapter.audio, word_timestamps=words)
            starts = edge_errors(
                [s.start for s in result.segments], [s.start_s for s in chapter.segments]
            )
            ends = edge_errors(
                [s.end for s in result.segments], [s.end_s for s in chapter.segments]
            )
            # the chapter's segments abut: each junction is one boundary, any predicted edge
            junctions = edge_errors(
                [t for s in result.segments for t in (s.start, s.end)],
                [s.start_s for s in chapter.segments[1:]],
            )
            label = "words" if words else "no words"
            print(
                f"{chapter.name[:40]:40s} {label:8s} {len(result.segments):3d} segments "
                f"(ref {len(chapter.segments)})\n  starts: {_stats(starts)}\n"
                f"  ends:   {_stats(ends)}\n  junctions, nearest edge: {_stats(junctions)}"
            )


def main(argv: list[str] | None = None) -> None:
    from runtime import Runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N utterances only")
    parser.add_argument("--path", choices=("both", "sequential", "batched"), default="both")
    parser.add_argument("--longform", action="store_true", help="segment edges instead")
    args = parser.parse_args(argv)
    rt = Runtime("tiny.en", backend=args.backend, precision=args.precision)
    print(f"{rt.session.describe()}")
    if args.longform:
        longform(rt)
        return
    utterances = json.loads(FIXTURE.read_text(encoding="utf-8"))["utterances"][: args.limit]
    paths = {"both": (True, False), "sequential": (True,), "batched": (False,)}[args.path]
    parity(rt, utterances, paths)


if __name__ == "__main__":
    main()
