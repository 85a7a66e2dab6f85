"""The decoding loop and its strategies, over a toy decoder whose logits we control."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.decoding import DecodingOptions, decode
from runtime.decoding.filters import (
    ApplyTimestampRules,
    SuppressBlank,
    SuppressTokens,
    apply_filters,
    log_softmax,
    logsumexp,
    suppress_list,
)
from runtime.decoding.strategies import rank, sample_tokens

NEG = -np.inf


class ToyState:
    """A decoder whose next-token logits depend only on (row's window, number of tokens so far)."""

    def __init__(self, table: np.ndarray, windows: np.ndarray, calls: list) -> None:
        self.table, self.rows, self.calls, self.length = table, windows, calls, 0

    def logits(self, tokens, positions=(-1,)):
        self.calls.append(len(self.rows))
        self.length += tokens.shape[1]
        out = []
        for p in positions:
            pos = self.length + (p if p < 0 else p - tokens.shape[1])
            out.append(self.table[self.rows, min(pos, self.table.shape[1] - 1)])
        return np.stack(out, axis=1).astype(np.float32)

    def keep(self, rows):
        self.rows = self.rows[np.asarray(rows)]


class ToySession:
    def __init__(self, model, table):
        self.model, self.table, self.calls = model, table, []

    def decoder(self, features):
        return ToyState(self.table, np.asarray(features), self.calls)


def _table(tokenizer, n_windows, lengths, vocab):
    """Window w says text tokens 220.. for lengths[w] steps, then end-of-text."""
    eot = tokenizer.special.eot
    table = np.full((n_windows, 64, vocab), -5.0, dtype=np.float32)
    for w, n in enumerate(lengths):
        for step in range(64):
            table[w, step, 1000 + w * 10 + step if step < n else eot] = 5.0
    return table


def test_greedy_batch_shrinks_and_matches_single_rows(tiny_model, tiny_tokenizer):
    vocab = tiny_model.dims.n_vocab
    lengths = [3, 7, 5]
    table = _table(tiny_tokenizer, 3, [n + 1 for n in lengths], vocab)
    session = ToySession(tiny_model, table)
    opts = DecodingOptions(without_timestamps=True, suppress_blank=False, suppress_tokens=())
    batched = decode(session, np.arange(3), tiny_tokenizer, opts)
    # the batch shrank as rows finished: 3 rows, then 2, then 1
    assert session.calls[0] == 3 and session.calls[-1] == 1 and 2 in session.calls
    for w in range(3):
        alone = decode(ToySession(tiny_model, table[w : w + 1]), np.arange(1), tiny_tokenizer, opts)
        assert batched[w].tokens == alone[0].tokens
        assert len(batched[w].tokens) == lengths[w]
        assert batched[w].avg_logprob == pytest.approx(alone[0].avg_logprob)


def test_beam_search_beats_greedy_trap(tiny_model, tiny_tokenizer):
    """Greedy takes the locally best token A and ends badly; beam search keeps B and wins."""
    eot, vocab = tiny_tokenizer.special.eot, tiny_model.dims.n_vocab
    a, b, c = 1000, 1001, 1002
    table = np.full((1, 64, vocab), -30.0, dtype=np.float32)
    table[0, 1, [a, b]] = [2.0, 1.9]  # first sampled position (after <|sot|> <|notimestamps|>)

    class TrapState(ToyState):
        def logits(self, tokens, positions=(-1,)):
            self.calls.append(len(self.rows))
            self.length += tokens.shape[1]
            if self.length == 2:  # the prompt
                return np.stack([self.table[self.rows, 0], self.table[self.rows, 1]], 1)
            out = np.full((len(tokens), vocab), -30.0, np.float32)
            for r, last in enumerate(tokens[:, -1]):
                if last == a:
                    out[r, [c, c + 1, c + 2, c + 3, eot]] = 0.0  # unsure after A
                elif last == b:
                    out[r, eot] = 10.0  # certain after B
                else:
                    out[r, eot] = 10.0
            return out[:, None]

    class TrapSession(ToySession):
        def decoder(self, features):
            return TrapState(self.table, np.asarray(features), self.calls)

    opts = dict(without_timestamps=True, suppress_blank=False, suppress_tokens=())
    greedy = decode(
        TrapSession(tiny_model, table), np.arange(1), tiny_tokenizer, DecodingOptions(**opts)
    )[0]
    beam = decode(
        TrapSession(tiny_model, table),
        np.arange(1),
        tiny_tokenizer,
        DecodingOptions(beam_size=3, **opts),
    )[0]
    assert greedy.tokens[0] == a
    assert beam.tokens == [b]
    assert beam.sum_logprob > greedy.sum_logprob


def test_timestamp_rules(tiny_tokenizer):
    ts = tiny_tokenizer.special.timestamp_begin
    eot = tiny_tokenizer.special.eot
    rules = ApplyTimestampRules(tiny_tokenizer, sample_begin=1, max_initial_timestamp_index=50)
    vocab = ts + 1501
    logits = np.zeros((1, vocab), np.float32)
    first = rules.apply(logits, np.array([[1]]))
    allowed = np.flatnonzero(np.isfinite(first[0]))
    assert allowed.min() == ts and allowed.max() == ts + 50  # starts with a timestamp <= 1.0 s
    # after text then a timestamp: only another timestamp (>= it) or end-of-text
    likely_end = logits.copy()
    likely_end[0, eot] = 10.0  # else the timestamps' total mass would ban end-of-text too
    after_text_ts = rules.apply(likely_end, np.array([[1, ts + 10, 300, ts + 20]]))
    allowed = np.flatnonzero(np.isfinite(after_text_ts[0]))
    assert allowed.min() == eot  # no text token (specials are the suppress list's business)
    assert allowed[allowed >= ts].min() == ts + 20
    # after a pair of timestamps: text must follow
    after_pair = rules.apply(logits, np.array([[1, ts, 300, ts + 20, ts + 20]]))
    assert np.all(np.isinf(after_pair[0, ts:]))
    # after text, timestamps may not go back before the last one
    after_text = rules.apply(logits, np.array([[1, ts + 10, 300]]))
    assert np.all(np.isinf(after_text[0, ts : ts + 11])) and np.isfinite(after_text[0, ts + 11])


def test_timestamp_mass_rule(tiny_tokenizer):
    ts = tiny_tokenizer.special.timestamp_begin
    rules = ApplyTimestampRules(tiny_tokenizer, sample_begin=1, max_initial_timestamp_index=None)
    logits = np.full((1, ts + 1501), -10.0, np.float32)
    logits[0, 300] = 0.0  # the single best token is text...
    logits[0, ts + 100 : ts + 200] = -1.0  # ...but timestamps together are likelier
    out = rules.apply(logits, np.array([[1, ts, 300]]))
    assert np.isinf(out[0, 300]) and np.isfinite(out[0, ts + 150])


def test_timestamp_mass_rule_decides_as_whispers_log_softmax_form(tiny_tokenizer):
    """The rule compares logsumexp(timestamp logits) with the best text logit; whisper compares
    the same two after a log-softmax over the whole row. Same decision on every row, including
    rows where one side is all -inf."""
    ts = tiny_tokenizer.special.timestamp_begin
    rules = ApplyTimestampRules(tiny_tokenizer, sample_begin=1, max_initial_timestamp_index=None)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, ts + 1501)).astype(np.float32) * 3
    logits[:, ts:] -= rng.uniform(-4, 6, (64, 1))  # timestamps from likely to hopeless
    logits[0, ts:] = NEG  # no timestamp allowed
    logits[1, :ts] = NEG  # no text allowed
    tokens = np.array([[1, 300, 301]] * 64)  # text so far: no pairing rule applies
    out = rules.apply(logits, tokens)
    logprobs = log_softmax(logits)
    with np.errstate(divide="ignore"):
        whisper = np.log(np.exp(logprobs[:, ts:]).sum(-1)) > logprobs[:, :ts].max(-1)
    assert 10 < whisper.sum() < 60  # both decisions occur
    np.testing.assert_array_equal(np.isneginf(out[:, :ts]).all(-1), whisper)
    exact = np.log(np.exp(logits[2:4].astype(np.float64)).sum(-1))
    np.testing.assert_allclose(logsumexp(logits[2:4]), exact, rtol=1e-5)
    assert np.isneginf(logsumexp(np.full((1, 3), NEG)))[0]


def test_suppress_blank_and_list(tiny_tokenizer):
    f = SuppressBlank(tiny_tokenizer, sample_begin=2)
    logits = np.zeros((1, 51864), np.float32)
    blank = tiny_tokenizer.encode(" ")[0]
    assert np.isinf(f.apply(logits, np.zeros((1, 2), int))[0, blank])
    assert np.isfinite(f.apply(logits, np.zeros((1, 3), int))[0, blank])
    ids = suppress_list(tiny_tokenizer, "-1")
    sp = tiny_tokenizer.special
    assert {sp.sot, sp.no_speech, sp.sot_prev}.issubset(ids)
    assert set(tiny_tokenizer.non_speech_tokens).issubset(ids)
    assert suppress_list(tiny_tokenizer, "13,-1") == sorted(set(ids) | {13})


def test_filters_mask_one_copy_and_leave_the_logits_alone(tiny_tokenizer):
    """``apply_filters`` runs the filters in order on a single copy: the caller's logits keep
    their values, and a row masked in place (as the continuous runner does, row by row of one
    stacked copy) gets what the copying ``apply`` chain gives."""
    ts = tiny_tokenizer.special.timestamp_begin
    filters = [
        SuppressBlank(tiny_tokenizer, sample_begin=2),
        SuppressTokens(suppress_list(tiny_tokenizer, "-1")),
        ApplyTimestampRules(tiny_tokenizer, sample_begin=2, max_initial_timestamp_index=50),
    ]
    logits = np.random.default_rng(3).normal(0, 3, (3, 51864)).astype(np.float32)
    before = logits.copy()
    tokens = np.array([[1, 2], [1, 2], [1, 2]])
    out = apply_filters(filters, logits, tokens)
    np.testing.assert_array_equal(logits, before)
    chained = logits
    for f in filters:
        chained = f.apply(chained, tokens)
    np.testing.assert_array_equal(out, chained)
    assert np.isneginf(out[:, :ts]).all() and np.isneginf(out[:, ts + 51 :]).all()
    stacked = logits.copy()
    for k in range(len(stacked)):
        for f in filters:
            f.mask(stacked[k : k + 1], tokens[k : k + 1])
    np.testing.assert_array_equal(stacked, out)


def test_sampling_is_seeded_and_follows_the_distribution():
    logits = np.log(np.array([[0.7, 0.2, 0.1]] * 20000, np.float32))
    a = sample_tokens(logits, 1.0, np.random.default_rng(1))
    b = sample_tokens(logits, 1.0, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert np.bincount(a, minlength=3) / len(a) == pytest.approx([0.7, 0.2, 0.1], abs=0.02)
    assert sample_tokens(logits[:2], 0.0, np.random.default_rng()).tolist() == [0, 0]


def test_rank_length_penalty():
    # normalized by length, the longer candidate wins; with no normalization (alpha=0) it loses
    cands, lps = [[1, 2], [1, 2, 3, 4, 5, 6]], [-2.0, -3.0]
    assert rank(cands, lps, None) == 1
    assert rank(cands, lps, 0.0) == 0


def test_log_softmax_keeps_minus_inf():
    out = log_softmax(np.array([[0.0, NEG, 0.0]], np.float32))
    assert np.isneginf(out[0, 1]) and out[0, 0] == pytest.approx(np.log(0.5))


@pytest.mark.parametrize(
    "bad",
    [
        dict(task="summarize"),
        dict(beam_size=5, best_of=5),
        dict(best_of=3),
        dict(patience=2.0),
        dict(length_penalty=2.0),
        dict(temperature=-1),
    ],
)
def test_options_reject_bad_combinations(bad):
    with pytest.raises(ValueError):
        DecodingOptions(**bad)
