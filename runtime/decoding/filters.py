"""Logit filters: Whisper's rules on which token may come next, over numpy logits.

Each filter masks logits (B, V) in place given the tokens so far (B, T) (``mask``: the rules
only ever forbid tokens, setting their logits to -inf), so the rules are written once for every
backend; ``apply_filters`` runs a list of them on one copy. The rules and their order are
openai-whisper's: blank suppression at the first sampled position, the suppress list, then the
timestamp grammar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # type hints only: the decoding loop needs no tokenizer library
    from runtime.model.tokenizer import Tokenizer

NEG_INF = np.float32(-np.inf)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32; -inf entries stay -inf."""
    x = logits.astype(np.float32, copy=True)
    x -= x.max(-1, keepdims=True)
    x -= np.log(np.exp(x).sum(-1, keepdims=True))
    return x


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """Row-wise log(sum(exp(x))) in float32: (B, V) -> (B,); -inf for rows that are all -inf."""
    peak = logits.max(-1, keepdims=True)
    safe = np.where(np.isfinite(peak), peak, np.float32(0.0))
    with np.errstate(divide="ignore"):
        return (safe + np.log(np.exp(logits - safe).sum(-1, keepdims=True)))[:, 0]


class LogitFilter:
    def mask(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        """Set to -inf, in place, the logits (B, V) of the tokens that may not come next after
        each row of ``tokens`` (B, T)."""
        raise NotImplementedError

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """``mask`` on a copy: the filtered logits, ``logits`` untouched."""
        return apply_filters([self], logits, tokens)


def mask_filters(filters: list[LogitFilter], logits: np.ndarray, tokens: np.ndarray) -> None:
    """Every filter's ``mask`` in order, on ``logits`` in place."""
    for f in filters:
        f.mask(logits, tokens)


def apply_filters(filters: list[LogitFilter], logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The logits after every filter in order, on one copy of their dtype (``logits``
    untouched)."""
    out = np.array(logits, copy=True)
    mask_filters(filters, out, tokens)
    return out


class SuppressBlank(LogitFilter):
    """No segment may start with a space or end-of-text: that would be an empty transcript."""

    def __init__(self, tokenizer: Tokenizer, sample_begin: int) -> None:
        self.banned = np.array(tokenizer.encode(" ") + [tokenizer.special.eot], dtype=np.int64)
        self.sample_begin = sample_begin

    def mask(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.banned] = NEG_INF


class SuppressTokens(LogitFilter):
    def __init__(self, suppress: list[int]) -> None:
        self.suppress = np.array(list(suppress), dtype=np.int64)

    def mask(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        logits[:, self.suppress] = NEG_INF


class ApplyTimestampRules(LogitFilter):
    """Timestamps come in pairs, never decrease, start the text, and win when they are likelier
    in total than any single text token (openai-whisper's rules)."""

    def __init__(
        self, tokenizer: Tokenizer, sample_begin: int, max_initial_timestamp_index: int | None
    ) -> None:
        self.eot = tokenizer.special.eot
        self.no_timestamps = tokenizer.special.no_timestamps
        self.ts_begin = tokenizer.special.timestamp_begin
        self.sample_begin = sample_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def mask(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        logits[:, self.no_timestamps] = NEG_INF
        for k in range(tokens.shape[0]):
            self._pair_and_order(logits[k], tokens[k, self.sample_begin :])
        if tokens.shape[1] == self.sample_begin:
            logits[:, : self.ts_begin] = NEG_INF  # the text must start with a timestamp
            if self.max_initial_timestamp_index is not None:
                logits[:, self.ts_begin + self.max_initial_timestamp_index + 1 :] = NEG_INF
        # whisper compares log-softmax values; the normaliser is common to both sides, so the
        # comparison needs only the 1501 timestamp logits' logsumexp (not a softmax over 51k)
        ts_mass = logsumexp(logits[:, self.ts_begin :])
        text_best = logits[:, : self.ts_begin].max(-1)
        logits[ts_mass > text_best, : self.ts_begin] = NEG_INF

    def _pair_and_order(self, row: np.ndarray, sampled: np.ndarray) -> None:
        last_was_ts = len(sampled) >= 1 and sampled[-1] >= self.ts_begin
        penultimate_was_ts = len(sampled) < 2 or sampled[-2] >= self.ts_begin
        if last_was_ts:
            if penultimate_was_ts:
                row[self.ts_begin :] = NEG_INF  # after a pair, text must follow
            else:
                row[: self.eot] = NEG_INF  # after text + timestamp, another timestamp or eot
        timestamps = sampled[sampled >= self.ts_begin]
        if len(timestamps):
            # never decrease; and a segment must have non-zero length (prevents loops)
            last = timestamps[-1] if last_was_ts and not penultimate_was_ts else timestamps[-1] + 1
            row[self.ts_begin : last] = NEG_INF


def suppress_list(tokenizer: Tokenizer, suppress_tokens: tuple[int, ...] | str | None) -> list[int]:
    """openai-whisper's ``_get_suppress_tokens``: "-1" means the non-speech symbols; special tokens
    that must never be sampled are always added."""
    if suppress_tokens is None or suppress_tokens == ():
        ids: set[int] = set()
    else:
        if isinstance(suppress_tokens, str):
            suppress_tokens = tuple(int(t) for t in suppress_tokens.split(",") if t.strip())
        ids = {t for t in suppress_tokens if t >= 0}
        if -1 in suppress_tokens:
            ids |= set(tokenizer.non_speech_tokens)
    sp = tokenizer.special
    ids |= {sp.translate, sp.transcribe, sp.sot, sp.sot_prev, sp.sot_lm, sp.no_speech}
    return sorted(ids)
