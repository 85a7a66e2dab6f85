"""The decoding loop, written once over numpy logits for every backend.

It drives a backend's ``DecoderState`` (logits for new tokens with a KV cache, and ``keep`` to
rearrange rows). With greedy decoding, rows that reach end-of-text leave the state so the batch
shrinks as it decodes; beam search keeps ``beam_size`` rows per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.audio.constants import TIME_PRECISION
from runtime.backend import DecoderState, Session
from runtime.decoding.filters import (
    ApplyTimestampRules,
    LogitFilter,
    SuppressBlank,
    SuppressTokens,
    apply_filters,
    log_softmax,
    logsumexp,
    suppress_list,
)
from runtime.decoding.options import DecodingOptions, DecodingResult
from runtime.decoding.strategies import BeamSearch, rank, sample_tokens

if TYPE_CHECKING:  # type hints only: the decoding loop needs no tokenizer library
    from runtime.model.tokenizer import Tokenizer


@dataclass(frozen=True)
class Prompt:
    """The initial tokens of every window (n, T0) and where sampling begins."""

    tokens: np.ndarray
    sot_index: int

    @property
    def sample_begin(self) -> int:
        return self.tokens.shape[1]


def build_prompt(
    tokenizer: Tokenizer,
    options: DecodingOptions,
    language: str | None,
    n_ctx: int,
    previous: Sequence[Sequence[int]],
) -> Prompt:
    """Per window: [<|startofprev|> previous text] <|startoftranscript|> [lang task]
    [<|notimestamps|>] [prefix]. ``previous`` holds each window's context, all of one length."""
    sot = list(tokenizer.sot_sequence(language, options.task))
    if options.without_timestamps:
        sot.append(tokenizer.special.no_timestamps)
    sample_len = options.sample_len or n_ctx // 2
    tail = sot + (list(options.prefix)[-(n_ctx // 2 - sample_len) :] if options.prefix else [])
    rows = []
    for context in previous:
        head = [tokenizer.special.sot_prev, *list(context)[-(n_ctx // 2 - 1) :]] if context else []
        rows.append(head + tail)
    if len({len(r) for r in rows}) > 1:
        raise ValueError("windows decoded together need previous-text prompts of one length")
    return Prompt(np.array(rows, dtype=np.int64), rows[0].index(tokenizer.special.sot))


def build_filters(
    tokenizer: Tokenizer, options: DecodingOptions, sample_begin: int
) -> list[LogitFilter]:
    filters: list[LogitFilter] = []
    if options.suppress_blank:
        filters.append(SuppressBlank(tokenizer, sample_begin))
    if options.suppress_tokens:
        filters.append(SuppressTokens(suppress_list(tokenizer, options.suppress_tokens)))
    if not options.without_timestamps:
        precision = TIME_PRECISION  # seconds per timestamp step (0.02)
        max_index = (
            None
            if options.max_initial_timestamp is None
            else round(options.max_initial_timestamp / precision)
        )
        filters.append(ApplyTimestampRules(tokenizer, sample_begin, max_index))
    return filters


def detect_language(
    session: Session, features: Any, tokenizer: Tokenizer
) -> tuple[list[str], list[dict[str, float]]]:
    """Most likely language per window, from the logits after <|startoftranscript|> alone."""
    state = session.decoder(features)
    sot = np.full((len(features), 1), tokenizer.special.sot, dtype=np.int64)
    logits = state.logits(sot)[:, 0]
    lang_tokens = list(tokenizer.all_language_tokens)
    probs = np.exp(log_softmax(logits[:, lang_tokens]))
    codes = tokenizer.all_language_codes
    best = [codes[i] for i in probs.argmax(-1)]
    return best, [dict(zip(codes, map(float, row))) for row in probs]


def decode(
    session: Session,
    features: Any,
    tokenizer: Tokenizer,
    options: DecodingOptions,
    prompts: Sequence[Sequence[int]] | None = None,
) -> list[DecodingResult]:
    """Decode every window of ``features`` (B windows) with the same options.

    ``prompts`` gives each window its own previous-text context (all of one length); without
    it every window gets ``options.prompt``."""
    n_windows = len(features)
    previous: list[Sequence[int]] = (
        list(prompts) if prompts is not None else [options.prompt or ()] * n_windows
    )
    language = options.language
    lang_probs: list[dict[str, float] | None] = [None] * n_windows
    if not tokenizer.multilingual:
        language = "en"
    elif language is None:
        detected, probs = detect_language(session, features, tokenizer)
        lang_probs = list(probs)
        if len(set(detected)) > 1:  # windows disagree: decode each with its own language
            return [
                r
                for i in range(n_windows)
                for r in _decode_one_language(
                    session,
                    session.take(features, np.array([i])),
                    tokenizer,
                    options,
                    detected[i],
                    [lang_probs[i]],
                    previous[i : i + 1],
                )
            ]
        language = detected[0]
    return _decode_one_language(
        session, features, tokenizer, options, language, lang_probs, previous
    )


def _decode_one_language(
    session: Session,
    features: Any,
    tokenizer: Tokenizer,
    options: DecodingOptions,
    language: str,
    lang_probs: list[dict[str, float] | None],
    previous: list[Sequence[int]],
) -> list[DecodingResult]:
    n_ctx = session.model.dims.n_text_ctx
    prompt = build_prompt(tokenizer, options, language, n_ctx, previous)
    filters = build_filters(tokenizer, options, prompt.sample_begin)
    state = session.decoder(features)
    n = len(features)
    first = state.logits(prompt.tokens, positions=(prompt.sot_index, -1))
    no_speech = np.exp(log_softmax(first[:, 0]))[:, tokenizer.special.no_speech]
    sample_len = options.sample_len or n_ctx // 2
    max_steps = min(sample_len, n_ctx - prompt.sample_begin)
    if options.beam_size and options.temperature == 0:
        seqs, sums = _beam_loop(state, first[:, 1], prompt, filters, options, tokenizer, max_steps)
    else:
        seqs, sums = _sampling_loop(
            state, first[:, 1], prompt, filters, options, tokenizer, max_steps
        )
    results = []
    for i in range(n):
        tokens, sum_lp = seqs[i], sums[i]
        results.append(
            DecodingResult(
                tokens=tokens,
                text=tokenizer.decode(tokens).strip(),
                language=language,
                avg_logprob=sum_lp / (len(tokens) + 1),
                sum_logprob=sum_lp,
                no_speech_prob=float(no_speech[i]),
                temperature=options.temperature,
                language_probs=lang_probs[i],
            )
        )
    return results


def _sampling_loop(
    state: DecoderState,
    logits: np.ndarray,
    prompt: Prompt,
    filters: list[LogitFilter],
    options: DecodingOptions,
    tokenizer: Tokenizer,
    max_steps: int,
) -> tuple[list[list[int]], list[float]]:
    """Greedy or temperature sampling; best_of samples per window ranked by likelihood."""
    group = options.best_of or 1
    n_windows = logits.shape[0]
    if group > 1:
        rows = np.repeat(np.arange(n_windows), group)
        state.keep(rows)
        logits = logits[rows]
    eot = tokenizer.special.eot
    rng = np.random.default_rng(options.seed)
    n_rows = logits.shape[0]
    tokens = np.repeat(prompt.tokens, group, axis=0)
    active = np.arange(n_rows)  # original row index of each row still in the state
    sums = np.zeros(n_rows)
    out: list[list[int] | None] = [None] * n_rows
    for step in range(max_steps):
        filtered = apply_filters(filters, logits, tokens)
        next_tokens = sample_tokens(filtered, options.temperature, rng)
        sums[active] += filtered[np.arange(len(active)), next_tokens] - logsumexp(filtered)
        tokens = np.concatenate([tokens, next_tokens[:, None]], axis=1)
        done = next_tokens == eot
        if step == max_steps - 1:
            done[:] = True
        for r in np.flatnonzero(done):
            seq = tokens[r, prompt.sample_begin :].tolist()
            out[active[r]] = seq[:-1] if seq[-1] == eot else seq
        if done.all():
            break
        if done.any():  # finished rows leave the batch: the work shrinks
            keep = np.flatnonzero(~done)
            state.keep(keep)
            tokens, active, next_tokens = tokens[keep], active[keep], next_tokens[keep]
        logits = state.logits(next_tokens[:, None])[:, 0]
    return _best_of_groups(out, sums, group, options.length_penalty)


def _best_of_groups(
    out: list, sums: np.ndarray, group: int, length_penalty: float | None
) -> tuple[list[list[int]], list[float]]:
    seqs, best_sums = [], []
    for w in range(len(out) // group):
        cands = out[w * group : (w + 1) * group]
        lps = [float(s) for s in sums[w * group : (w + 1) * group]]
        best = rank(cands, lps, length_penalty) if group > 1 else 0
        seqs.append(cands[best])
        best_sums.append(lps[best])
    return seqs, best_sums


def _beam_loop(
    state: DecoderState,
    logits: np.ndarray,
    prompt: Prompt,
    filters: list[LogitFilter],
    options: DecodingOptions,
    tokenizer: Tokenizer,
    max_steps: int,
) -> tuple[list[list[int]], list[float]]:
    beam = options.beam_size
    assert beam, "the beam loop runs only when options.beam_size is set"
    n_windows = logits.shape[0]
    rows = np.repeat(np.arange(n_windows), beam)
    state.keep(rows)
    logits = logits[rows]
    search = BeamSearch(beam, tokenizer.special.eot, options.patience or 1.0)
    search.reset(n_windows)
    tokens = prompt.tokens[rows]
    sums = np.zeros(len(rows))
    for _ in range(max_steps):
        step = search.update(tokens, apply_filters(filters, logits, tokens), sums)
        tokens, sums = step.next_tokens, step.sum_logprobs
        if step.completed:
            break
        state.keep(step.source_rows)
        logits = state.logits(tokens[:, -1:])[:, 0]
    finished = search.finalize(tokens, sums)
    seqs, best_sums = [], []
    for cands in finished:
        seq_list = [list(s[prompt.sample_begin : -1]) for s in cands]
        lps = list(cands.values())
        best = rank(seq_list, lps, options.length_penalty)
        seqs.append(seq_list[best])
        best_sums.append(lps[best])
    return seqs, best_sums
