"""Word alignment of decoded windows, a whole batch at once (openai-whisper's ``find_alignment``).

Every row's text is teacher-forced through the decoder once more, as
``<|startoftranscript|> [lang task] <|notimestamps|> text <|endoftext|>``, against its window's
encoded features. The cross-attention of the model's alignment heads, softmaxed over the window's
own frames, normalized per head over tokens, median-filtered over time and averaged over heads,
is a token x frame similarity; dynamic time warping through it gives each token's first frame,
hence each word's start and end. Rows of a batch are right-padded to one length (the decoder is
causal, so padding never changes earlier positions) and go through one backend call.

The backend supplies the attention through ``DecoderState.logits_and_attention`` when its
capabilities declare ``word_timestamps``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.audio.constants import TOKENS_PER_SECOND
from runtime.backend import AttentionState, Session
from runtime.decoding.filters import log_softmax
from runtime.model.tokenizer import Tokenizer
from runtime.model.weights import WhisperModel
from runtime.words.dtw import dtw_batch, median_filter

MEDFILT_WIDTH = 7
LOGITS_BYTES_PER_CALL = 64 << 20  # bound on the (rows, positions, vocab) logits of one call
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}  # words split at unicode points


@dataclass
class WordTiming:
    """One word of a window: seconds from the window's start, and its mean token probability."""

    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class AlignRequest:
    """One row to align: its text tokens (no timestamps), the frames its window really has
    (mel frames, <= 3000), and the language and task its start sequence names."""

    text_tokens: tuple[int, ...]
    n_frames: int
    language: str | None = None
    task: str = "transcribe"


def alignment_heads(model: WhisperModel) -> tuple[tuple[int, int], ...]:
    """The model's (layer, head) alignment heads (``WhisperModel.word_alignment_heads``)."""
    return model.word_alignment_heads()


def find_alignments(
    session: Session,
    tokenizer: Tokenizer,
    features: Any,
    requests: Sequence[AlignRequest],
    heads: Sequence[tuple[int, int]],
    medfilt_width: int = MEDFILT_WIDTH,
) -> list[list[WordTiming]]:
    """Word timings of every row of ``features`` (one request per row; no text, or a window
    shorter than one encoder frame -> [])."""
    todo = [i for i, r in enumerate(requests) if r.text_tokens and r.n_frames >= 2]
    out: list[list[WordTiming]] = [[] for _ in requests]
    if not todo:
        return out
    rows = [_row_tokens(tokenizer, requests[i]) for i in todo]
    n_sot = len(tokenizer.sot_sequence(requests[todo[0]].language, requests[todo[0]].task))
    length = max(len(r) for r in rows)
    per_call = max(1, LOGITS_BYTES_PER_CALL // (4 * length * session.model.dims.n_vocab))
    matrices, probs = [], []
    for k in range(0, len(todo), per_call):
        part = todo[k : k + per_call]
        m, p = _attention_matrices(
            session,
            tokenizer,
            session.take(features, np.array(part)),
            [requests[i] for i in part],
            rows[k : k + per_call],
            n_sot,
            heads,
            medfilt_width,
        )
        matrices += m
        probs += p
    paths = dtw_batch([-m for m in matrices])
    for i, path, row_probs in zip(todo, paths, probs):
        out[i] = _words(tokenizer, requests[i], path, row_probs)
    return out


def _row_tokens(tokenizer: Tokenizer, request: AlignRequest) -> list[int]:
    sp = tokenizer.special
    return [
        *tokenizer.sot_sequence(request.language, request.task),
        sp.no_timestamps,
        *request.text_tokens,
        sp.eot,
    ]


def _attention_matrices(
    session: Session,
    tokenizer: Tokenizer,
    features: Any,
    requests: list[AlignRequest],
    rows: list[list[int]],
    n_sot: int,
    heads: Sequence[tuple[int, int]],
    medfilt_width: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per row: the (text + 1, frames) token x frame matrix and the text tokens' probabilities."""
    eot = tokenizer.special.eot
    length = max(len(r) for r in rows)
    tokens = np.full((len(rows), length), eot, dtype=np.int64)  # right-padded with <|endoftext|>
    for b, r in enumerate(rows):
        tokens[b, : len(r)] = r
    n_text = max(len(r.text_tokens) for r in requests)
    positions = tuple(range(n_sot, n_sot + n_text))
    state = session.decoder(features)
    # words are asked for only of backends declaring word_timestamps (checked with the options)
    assert isinstance(state, AttentionState), "this backend's decoder gives no attention"
    logits, qk = state.logits_and_attention(tokens, positions, tuple(heads))
    matrices, probs = [], []
    for b, (request, r) in enumerate(zip(requests, rows)):
        n = len(request.text_tokens)
        logprobs = log_softmax(logits[b, :n, :eot])
        probs.append(np.exp(logprobs[np.arange(n), list(request.text_tokens)]))
        w = qk[b, :, : len(r), : request.n_frames // 2].astype(np.float32)  # a copy
        w -= w.max(axis=-1, keepdims=True)  # softmax over the window's own frames, in place
        np.exp(w, out=w)
        w /= w.sum(axis=-1, keepdims=True)
        mean, std = w.mean(axis=-2, keepdims=True), w.std(axis=-2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant head (no signal): 0
            w = np.nan_to_num((w[:, n_sot : len(r) - 1] - mean) / std)  # rows <|notimestamps|>+text
        matrices.append(median_filter(w, medfilt_width).mean(axis=0).astype(np.float64))
    return matrices, probs


def _words(
    tokenizer: Tokenizer,
    request: AlignRequest,
    path: tuple[np.ndarray, np.ndarray],
    probs: np.ndarray,
) -> list[WordTiming]:
    text_indices, time_indices = path
    words, word_tokens = split_to_word_tokens(
        tokenizer, list(request.text_tokens), request.language
    )
    if not words:
        return []
    sizes = [len(t) for t in word_tokens]
    boundaries = np.pad(np.cumsum(sizes), (1, 0))  # the <|endoftext|> ends the last word
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    return [
        WordTiming(word, tokens, float(start), float(end), float(np.mean(probs[i:j])))
        for word, tokens, start, end, i, j in zip(
            words, word_tokens, starts, ends, boundaries[:-1], boundaries[1:]
        )
    ]


def split_to_word_tokens(
    tokenizer: Tokenizer, tokens: list[int], language: str | None
) -> tuple[list[str], list[list[int]]]:
    """Words and their tokens, as openai-whisper splits them: at spaces and punctuation, or at
    every complete unicode character for languages written without spaces."""
    subwords, subword_tokens = _split_on_unicode(tokenizer, tokens)
    if language in NO_SPACE_LANGUAGES:
        return subwords, subword_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for subword, toks in zip(subwords, subword_tokens):
        if subword.startswith(" ") or subword.strip() in string.punctuation or not words:
            words.append(subword)
            word_tokens.append(list(toks))
        else:
            words[-1] += subword
            word_tokens[-1].extend(toks)
    return words, word_tokens


def _split_on_unicode(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Pieces of whole unicode characters: tokens are grouped until they decode without a
    replacement character that the full text does not have at that place."""
    replacement = "\ufffd"
    full = tokenizer.decode(tokens)
    words, word_tokens, current, offset = [], [], [], 0
    for token in tokens:
        current.append(token)
        decoded = tokenizer.decode(current)
        if replacement not in decoded or full[offset + decoded.index(replacement)] == replacement:
            words.append(decoded)
            word_tokens.append(current)
            current = []
            offset += len(decoded)
    return words, word_tokens
