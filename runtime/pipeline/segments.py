"""From a decoded window to segments, the same for both paths: the quality checks that decide
fallback and silence, cutting a window's tokens into pieces at timestamp pairs, words and
language onto the pieces, and the pieces kept as ``Segment`` objects.

A *piece* is a dict ``{start, end, tokens[, words, language]}`` (openai-whisper's segment dict):
``split_segments`` makes them, ``attach_words``/``tag_language`` annotate them in place, and
``emit_segments`` turns the ones with text into segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.audio.constants import FRAMES_PER_SECOND, INPUT_STRIDE, TIME_PRECISION
from runtime.decoding import DecodingResult
from runtime.output.results import Segment, Word
from runtime.pipeline.options import TranscribeOptions
from runtime.words.align import AlignRequest
from runtime.words.aligner import window_text_tokens
from runtime.words.attach import Punctuation, add_word_timestamps

if TYPE_CHECKING:
    from runtime.model.tokenizer import Tokenizer
    from runtime.words.aligner import WordAligner


def needs_fallback(result: DecodingResult, options: TranscribeOptions) -> bool:
    """True when a window's text loops or is unlikely, unless the window is silence."""
    bad = False
    if (
        options.compression_ratio_threshold is not None
        and result.compression_ratio > options.compression_ratio_threshold
    ):
        bad = True
    if options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
        bad = True
    if (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
        and options.logprob_threshold is not None
        and result.avg_logprob < options.logprob_threshold
    ):
        bad = False  # silence: a low log-probability is expected, not a failure
    return bad


def is_silence(result: DecodingResult, options: TranscribeOptions) -> bool:
    """Whisper's no-speech gate: likely silence and not confidently decoded."""
    if options.no_speech_threshold is None:
        return False
    skip = result.no_speech_prob > options.no_speech_threshold
    if options.logprob_threshold is not None and result.avg_logprob > options.logprob_threshold:
        skip = False
    return skip


def is_digital_silence(samples: np.ndarray, options: TranscribeOptions) -> bool:
    if options.silence_rms_threshold is None or not len(samples):
        return False
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return rms < options.silence_rms_threshold


def split_segments(
    result: DecodingResult, tokenizer: Tokenizer, time_offset: float, segment_frames: int
) -> tuple[list[dict], int]:
    """Cut a window's tokens at consecutive timestamp pairs; return pieces and frames to seek."""
    ts_begin = tokenizer.special.timestamp_begin
    tokens = np.array(result.tokens, dtype=np.int64)
    is_ts = tokens >= ts_begin
    single_ending = len(tokens) >= 2 and is_ts[-2:].tolist() == [False, True]
    consecutive: list[int] = (np.flatnonzero(is_ts[:-1] & is_ts[1:]) + 1).tolist()
    pieces: list[dict] = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_ending else [])
        last = 0
        for current in slices:
            part = tokens[last:current]
            pieces.append(
                dict(
                    start=time_offset + (part[0] - ts_begin) * TIME_PRECISION,
                    end=time_offset + (part[-1] - ts_begin) * TIME_PRECISION,
                    tokens=part.tolist(),
                )
            )
            last = current
        seek = segment_frames if single_ending else int(tokens[last - 1] - ts_begin) * INPUT_STRIDE
    else:
        duration = segment_frames / FRAMES_PER_SECOND
        stamps = tokens[is_ts]
        if len(stamps) and stamps[-1] != ts_begin:
            duration = (stamps[-1] - ts_begin) * TIME_PRECISION
        pieces.append(dict(start=time_offset, end=time_offset + duration, tokens=tokens.tolist()))
        seek = segment_frames
    return pieces, seek


def tag_language(pieces: list[dict], result: DecodingResult, options: TranscribeOptions) -> None:
    """With per-chunk detection, each piece records the language its window was decoded in."""
    if options.language_detection == "chunk":
        for piece in pieces:
            piece["language"] = result.language


def align_windows(
    aligner: WordAligner,
    features: Any,
    results: Sequence[DecodingResult],
    n_frames: Sequence[int],
    options: Sequence[TranscribeOptions],
) -> None:
    """Word timings of every window of ``features`` whose options ask for them (silence aside),
    in one more decoder pass; each is stored as its result's ``alignment``."""
    eot = aligner.tokenizer.special.eot
    requests = []
    for result, frames, opts in zip(results, n_frames, options):
        wanted = opts.word_timestamps and not is_silence(result, opts)
        pieces = split_segments(result, aligner.tokenizer, 0.0, frames)[0] if wanted else []
        requests.append(
            AlignRequest(window_text_tokens(pieces, eot), frames, result.language, opts.task)
        )
    for result, opts, words in zip(results, options, aligner.align(features, requests)):
        if opts.word_timestamps:
            result.alignment = words


def attach_words(
    pieces: list[dict],
    result: DecodingResult,
    time_offset: float,
    tokenizer: Tokenizer,
    options: TranscribeOptions,
    last_speech_timestamp: float,
) -> float:
    """Words of an aligned window onto its pieces (in place; none without an alignment).
    Returns the new last speech timestamp."""
    if result.alignment is None:
        return last_speech_timestamp
    return add_word_timestamps(
        pieces,
        result.alignment,
        time_offset,
        tokenizer.special.eot,
        last_speech_timestamp,
        Punctuation(options.prepend_punctuations, options.append_punctuations),
    )


def emit_segments(
    pieces: list[dict], tokenizer: Tokenizer, result: DecodingResult, seek: int, first_id: int = 0
) -> tuple[list[Segment], list[int], float | None]:
    """The pieces that hold text as segments (ids from ``first_id``), their tokens (what the
    window adds to its stream's context) and the last one's end in seconds (None: no text)."""
    segments: list[Segment] = []
    kept: list[int] = []
    last_end: float | None = None
    for piece in pieces:
        text = tokenizer.decode(piece["tokens"])
        if piece["start"] == piece["end"] or not text.strip():
            continue
        segments.append(make_segment(first_id + len(segments), seek, piece, text, result))
        kept += piece["tokens"]
        last_end = float(piece["end"])
    return segments, kept, last_end


def make_segment(index: int, seek: int, piece: dict, text: str, result: DecodingResult) -> Segment:
    """A Segment from one piece cut by ``split_segments`` (with ``words`` when they were
    attached) and the window's decoding result."""
    words = piece.get("words")
    return Segment(
        id=index,
        seek=seek,
        start=round(float(piece["start"]), 3),
        end=round(float(piece["end"]), 3),
        text=text,
        tokens=tuple(int(t) for t in piece["tokens"]),
        temperature=result.temperature,
        avg_logprob=result.avg_logprob,
        compression_ratio=result.compression_ratio,
        no_speech_prob=result.no_speech_prob,
        language=piece.get("language"),
        words=None
        if words is None
        else tuple(
            Word(
                start=float(w["start"]),
                end=float(w["end"]),
                word=w["word"],
                probability=float(w["probability"]),
            )
            for w in words
        ),
    )
