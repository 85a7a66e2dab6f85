"""Scoring helpers of tools/eval_common.py: normalisation, corpus WER, eval-set loading."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tools.eval_common import (
    WordErrors,
    eval_dir,
    load_jfk,
    load_librispeech,
    load_longform,
    normalize_text,
    number_to_words,
    wer,
    word_errors,
)

needs_jiwer = pytest.mark.skipif(
    importlib.util.find_spec("jiwer") is None, reason="jiwer not installed"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HE HOPED THERE WOULD BE STEW", "he hoped there would be stew"),
        ("Hello, world! How are you?", "hello world how are you"),
        ("  spaced\tout \n words ", "spaced out words"),
        ("THERE'S", "there's"),
        ("There\u2019s a man\u2019s hat", "there's a man's hat"),
        ("'Tis Dickens' book", "tis dickens book"),
        ("rock 'n' roll", "rock n roll"),
        ("O'CLOCK", "o'clock"),
        ("well-known \u2014 said he", "well known said he"),
        (
            "Mr. Hale and Mrs. Thornton met Dr. Grey",
            "mister hale and missus thornton met doctor grey",
        ),
        ("salt & pepper, 5%", "salt and pepper five percent"),
        ("1,000 men on the 21st", "one thousand men on the twenty first"),
        ("in 1803", "in one thousand eight hundred three"),
        ('"Quoted" (aside) [note]; end.', "quoted aside note end"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@needs_jiwer
def test_normalisation_makes_whisper_style_text_match_librispeech_refs() -> None:
    hyp = "And so, my fellow Americans, ask not what your country can do for you."
    ref = "AND SO MY FELLOW AMERICANS ASK NOT WHAT YOUR COUNTRY CAN DO FOR YOU"
    assert normalize_text(hyp) == normalize_text(ref)
    assert wer(ref, hyp) == 0.0


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (19, "nineteen"),
        (20, "twenty"),
        (42, "forty two"),
        (100, "one hundred"),
        (115, "one hundred fifteen"),
        (2000, "two thousand"),
        (1_000_001, "one million one"),
        (12_345, "twelve thousand three hundred forty five"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("1st", "first"),
        ("2nd", "second"),
        ("3rd", "third"),
        ("12th", "twelfth"),
        ("90th", "ninetieth"),
    ],
)
def test_ordinals(token: str, words: str) -> None:
    assert normalize_text(token) == words


# --- WER ---------------------------------------------------------------------------------------


@needs_jiwer
def test_perfect_match() -> None:
    counts = word_errors("the cat sat", "The cat, sat.")
    assert counts == WordErrors(substitutions=0, deletions=0, insertions=0, hits=3)
    assert counts.wer == 0.0


@needs_jiwer
def test_one_of_each_error() -> None:
    # ref: a b c d | hyp: a x c d e -> b->x substitution, e inserted
    counts = word_errors("a b c d", "a x c d e")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    assert counts.wer == pytest.approx(2 / 4)
    # ref: a b c d | hyp: a c d -> b deleted
    counts = word_errors("a b c d", "a c d")
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (0, 1, 0, 3)


@needs_jiwer
def test_corpus_level_is_total_errors_over_total_words() -> None:
    refs = ["one two three four five six seven eight nine ten", "hello there"]
    hyps = ["one two three four five six seven eight nine ten", "goodbye"]
    # 2 errors (1 substitution, 1 deletion) over 12 words, not the mean of 0 % and 100 %.
    counts = word_errors(refs, hyps)
    assert counts.errors == 2
    assert counts.ref_words == 12
    assert wer(refs, hyps) == pytest.approx(2 / 12)


@needs_jiwer
def test_insertions_can_exceed_100_percent() -> None:
    # A repetition loop: 2 reference words, 6 hypothesis words -> 4 insertions = 200 %.
    assert wer("go home", "go home go home go home") == pytest.approx(2.0)


@needs_jiwer
def test_normalisation_applies_to_both_sides() -> None:
    assert wer("THERE'S IRON", "There\u2019s iron.") == 0.0
    assert wer("MISTER HALE", "Mr. Hale") == 0.0
    assert wer("MISTER HALE", "Mr. Hale", normalize=False) == 1.0


@needs_jiwer
def test_empty_sides() -> None:
    assert word_errors(["a b", "c"], ["", "c"]) == WordErrors(0, 2, 0, 1)
    assert word_errors([""], ["x y"]) == WordErrors(0, 0, 2, 0)
    assert word_errors([""], [""]).wer == 0.0


@needs_jiwer
def test_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_errors(["a", "b"], ["a"])


# --- eval sets ---------------------------------------------------------------------------------

needs_eval_data = pytest.mark.skipif(
    not (eval_dir() / "librispeech" / "subsets.tsv").exists(), reason="shared eval data not present"
)


@needs_eval_data
def test_librispeech_sets() -> None:
    clean = load_librispeech(["test-clean"])
    other = load_librispeech(["test-other"])
    dev = load_librispeech(["dev-clean"])
    assert (len(clean), len(other), len(dev)) == (18, 100, 5)
    assert len(load_librispeech()) == 123
    assert [u.utt_id for u in clean] == sorted(u.utt_id for u in clean)
    first = clean[0]
    assert first.utt_id == "1089-134686-0000"
    assert first.reference.startswith("HE HOPED THERE WOULD BE STEW")
    assert first.audio.is_file()
    with pytest.raises(ValueError):
        load_librispeech(["no-such-subset"])


@needs_eval_data
def test_longform_and_jfk() -> None:
    files = {f.name: f for f in load_longform()}
    ch01 = files["librispeech-19-198_northanger-abbey-ch01"]
    assert len(ch01.segments) == 38
    assert len(ch01.reference.split()) == 1228
    assert ch01.duration_s == pytest.approx(504.92, abs=0.01)
    assert load_jfk().reference.startswith("And so, my fellow Americans")


@needs_eval_data
def test_decode_audio_matches_the_reference_fixture() -> None:
    """decode_audio reproduces the samples tools/make_reference.py decoded (JFK: resampled)."""
    import json
    from pathlib import Path

    from tools.eval_common import audio_sha256, decode_audio

    fixture = Path(__file__).parent / "fixtures" / "reference_tiny_en.json"
    records = {u["utt_id"]: u for u in json.loads(fixture.read_text())["utterances"]}
    for utt in (load_librispeech(["test-clean"])[0], load_jfk()):
        audio = decode_audio(utt.audio)
        assert audio.dtype == np.float32
        assert audio.shape == (records[utt.utt_id]["audio_num_samples"],)
        assert audio_sha256(audio) == records[utt.utt_id]["audio_sha256_float32"]
