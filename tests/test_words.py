"""Word timestamps: the numeric steps against plain reference code, the word split and punctuation
rules, and parity with openai-whisper's ``word_timestamps=True`` on LibriSpeech
(``tests/fixtures/words_tiny_en.json``, made by ``tools/make_word_reference.py``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from runtime.backend import Capabilities
from runtime.errors import UnsupportedRequestError
from runtime.words import WordTiming, add_word_timestamps, split_to_word_tokens
from runtime.words.attach import merge_punctuations
from runtime.words.dtw import MEDIAN7_NETWORK, dtw_batch, median_filter
from tests.conftest import EVAL_DIR, FIXTURES

WORDS_FIXTURE = FIXTURES / "words_tiny_en.json"
PARITY_UTTERANCES = 16  # of the fixture's, spread over it (the tools script runs them all)


# -- numeric steps ------------------------------------------------------------------------------
def _reference_dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """openai-whisper's ``dtw_cpu`` + ``backtrace``, as plain loops."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = -np.ones((n + 1, m + 1), dtype=np.float32)
    cost[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + c
            trace[i, j] = t
    i, j = n, m
    trace[0, :], trace[:, 0] = 2, 1
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        i, j = (
            (i - 1, j - 1) if trace[i, j] == 0 else (i - 1, j) if trace[i, j] == 1 else (i, j - 1)
        )
    return tuple(np.array(path[::-1]).T)


def test_dtw_batch_equals_the_reference_loop_on_matrices_of_several_shapes():
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, m)) for n, m in ((5, 40), (12, 30), (1, 9), (20, 20))]
    mats.append(np.round(rng.standard_normal((8, 25)), 1))  # many ties
    got = dtw_batch(mats)
    for x, (rows, cols) in zip(mats, got):
        want_rows, want_cols = _reference_dtw(x)
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(cols, want_cols)
        assert rows[-1] == x.shape[0] - 1 and cols[-1] == x.shape[1] - 1  # the path ends there
    assert [len(r) for r, _ in got] == [len(r) for r, _ in (dtw_batch([m])[0] for m in mats)]


@pytest.mark.parametrize("width", [7, 5])
def test_median_filter_matches_a_sliding_median_with_reflect_padding(width):
    x = np.random.default_rng(2).standard_normal((3, 4, 50)).astype(np.float32)
    pad = width // 2
    padded = np.concatenate([x[..., pad:0:-1], x, x[..., -2 : -pad - 2 : -1]], axis=-1)  # reflect
    want = np.stack([np.median(padded[..., k : k + width], axis=-1) for k in range(50)], axis=-1)
    np.testing.assert_allclose(median_filter(x, width), want, rtol=0, atol=0)
    short = x[..., :2]
    assert median_filter(short, 7) is short  # too short to filter, as openai-whisper


def test_median_network_sorts_every_zero_one_input_to_its_middle():
    """The pruned network's middle wire is the median of any 7 bits (zero-one principle)."""
    for bits in range(128):
        wires = [(bits >> k) & 1 for k in range(7)]
        for a, b in MEDIAN7_NETWORK:
            wires[a], wires[b] = min(wires[a], wires[b]), max(wires[a], wires[b])
        assert wires[3] == sorted((bits >> k) & 1 for k in range(7))[3]


# -- words --------------------------------------------------------------------------------------
def test_split_to_word_tokens_joins_subwords_and_splits_punctuation(tiny_tokenizer):
    tokens = tiny_tokenizer.encode(" Stuffered into you, his belly counseled him.")
    words, groups = split_to_word_tokens(tiny_tokenizer, tokens, "en")
    assert words == [
        " Stuffered",
        " into",
        " you",
        ",",
        " his",
        " belly",
        " counseled",
        " him",
        ".",
    ]
    assert sum(groups, []) == tokens


def test_split_keeps_multibyte_characters_whole(base_model):
    from runtime.model.tokenizer import load_tokenizer

    tok = load_tokenizer(base_model.tokenizer_path, True, base_model.dims.num_languages)
    tokens = tok.encode(" Grüße 🎉 你好")
    words, groups = split_to_word_tokens(tok, tokens, "de")
    assert words == [" Grüße", " 🎉", " 你好"] and sum(groups, []) == tokens
    pieces, _ = split_to_word_tokens(tok, tok.encode("今天天气很好"), "zh")  # no spaces
    assert pieces == ["今天", "天", "气", "很好"]  # one piece per token of whole characters


def _timing(word: str, start: float, end: float) -> WordTiming:
    return WordTiming(word, [len(word)], start, end, 0.9)


def test_merge_punctuations_attaches_quotes_and_stops_to_their_words():
    words = [_timing(w, i, i + 1) for i, w in enumerate([' "', "Hello", ",", " world", "."])]
    merge_punctuations(words, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    assert [w.word for w in words if w.word] == [' "Hello,', " world."]


def test_add_word_timestamps_fills_pieces_and_moves_edges_to_the_words():
    alignment = [_timing(" one", 0.5, 0.9), _timing(" two", 0.9, 1.3), _timing(" three", 2.0, 2.4)]
    pieces = [dict(start=10.0, end=11.5, tokens=[4, 4]), dict(start=11.5, end=13.0, tokens=[6])]
    last = add_word_timestamps(pieces, alignment, 10.0, eot=1000, last_speech_timestamp=10.0)
    assert [w["word"] for w in pieces[0]["words"]] == [" one", " two"]
    assert [w["word"] for w in pieces[1]["words"]] == [" three"]
    assert pieces[0]["start"] == 10.5 and pieces[0]["end"] == 11.3  # the words' edges
    assert pieces[1]["words"][0]["start"] == 12.0 and last == pieces[1]["end"] == 12.4


def test_a_backend_without_cross_attention_is_refused(cpu_runtime):
    from runtime.words.aligner import WordAligner

    caps = dataclasses.replace(Capabilities(), word_timestamps=False)
    with pytest.raises(UnsupportedRequestError, match="cannot give word timestamps"):
        WordAligner(cpu_runtime.session, cpu_runtime.tokenizer, caps, "npu-thing")


# -- end to end, and parity with openai-whisper --------------------------------------------------
def test_words_tile_their_segments(cpu_runtime):
    from tests.conftest import eval_file

    result = cpu_runtime.transcribe(eval_file("jfk.flac"), word_timestamps=True)
    words = [w for s in result.segments for w in s.words]
    assert "".join(w.word for w in words).strip() == result.text.strip()
    assert all(0 < w.probability <= 1 and w.start <= w.end for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    for s in result.segments:
        assert s.words[0].start == s.start and s.words[-1].end == s.end
    assert result.to_dict()["segments"][0]["words"][0]["word"] == words[0].word
    assert "words" in result.timings  # the batched path's extra decoder pass is timed


def _parity_utterances() -> list[dict]:
    if not WORDS_FIXTURE.exists():
        pytest.skip(f"{WORDS_FIXTURE.name} is absent: run tools/make_word_reference.py")
    if not EVAL_DIR.exists():
        pytest.skip(f"evaluation audio is absent ({EVAL_DIR} not beside the repo)")
    utts = json.loads(WORDS_FIXTURE.read_text(encoding="utf-8"))["utterances"]
    step = max(1, len(utts) // PARITY_UTTERANCES)
    return utts[::step][:PARITY_UTTERANCES]


def test_word_times_match_openai_whisper_sequential(cpu_runtime):
    """On utterances decoded to the same text as openai-whisper, word starts and ends differ
    by a median of at most 0.1 s and a 95th percentile of at most 0.3 s."""
    from tools.eval_words import compare_words, transcribe_words

    diffs, compared = [], 0
    for utt in _parity_utterances():
        d = compare_words(transcribe_words(cpu_runtime, utt, sequential=True), utt)
        if d is not None:
            diffs += d
            compared += 1
    assert compared >= PARITY_UTTERANCES * 3 // 4, f"only {compared} texts equal openai-whisper's"
    _check_bounds(np.array(diffs))


def test_word_times_match_openai_whisper_batched(cpu_runtime):
    """The batched path (VAD-cut windows): the same bounds over the words its transcripts share
    with openai-whisper's, which must be most of them."""
    from tools.eval_words import matched_word_diffs, transcribe_words

    diffs, n_ref = [], 0
    for utt in _parity_utterances():
        d, n = matched_word_diffs(transcribe_words(cpu_runtime, utt, sequential=False), utt)
        diffs += d
        n_ref += n
    assert len(diffs) // 2 >= 0.85 * n_ref, f"{len(diffs) // 2} of {n_ref} words shared"
    _check_bounds(np.array(diffs))


def _check_bounds(diffs: np.ndarray) -> None:
    assert np.median(diffs) <= 0.1 and np.percentile(diffs, 95) <= 0.3, (
        f"median {np.median(diffs):.3f}, p95 {np.percentile(diffs, 95):.3f} over {len(diffs)}"
    )


def test_rows_without_text_or_frames_get_no_words(cpu_runtime):
    """A batch mixing a real window, an empty text and a window too short to align."""
    from runtime.words import AlignRequest, alignment_heads, find_alignments

    tok = cpu_runtime.tokenizer
    text = tuple(tok.encode(" And so my fellow Americans"))
    features = np.zeros((3, 1500, cpu_runtime.session.model.dims.n_audio_state), np.float32)
    requests = [AlignRequest(text, 3000), AlignRequest((), 3000), AlignRequest(text, 1)]
    out = find_alignments(
        cpu_runtime.session, tok, features, requests, alignment_heads(cpu_runtime.session.model)
    )
    assert [w.word for w in out[0]] == [" And", " so", " my", " fellow", " Americans"]
    assert out[1] == [] and out[2] == []
