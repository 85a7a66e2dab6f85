"""The sequential reference path: 30 s windows, each seeking to the last timestamp of the previous.

This is the long-form algorithm Whisper users know (openai-whisper's ``transcribe``), kept as
named steps: window, decode with fallback, cut into segments, advance. The batched path is
measured against it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from runtime.backend import Session
from runtime.decoding import DecodingOptions, DecodingResult, decode, detect_language
from runtime.decoding.language import DETECTION_MODES, chunk_languages
from runtime.audio.mel import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from runtime.audio.mel import log_mel_spectrogram, pad_or_trim
from runtime.output.results import Segment, Word
from runtime.model.tokenizer import Tokenizer
from runtime.words.align import AlignRequest
from runtime.words.aligner import WordAligner, window_text_tokens
from runtime.words.attach import Punctuation, add_word_timestamps, last_word_end

log = logging.getLogger(__name__)

TIME_PRECISION = 0.02  # seconds per timestamp token: 2 mel frames of 10 ms
INPUT_STRIDE = 2  # mel frames per encoder output frame (conv2 has stride 2)


@dataclass(frozen=True)
class TranscribeOptions:
    # decoding
    task: str = "transcribe"
    language: str | None = None
    beam_size: int | None = None  # None = greedy at temperature 0
    best_of: int | None = 5  # samples per window when falling back to temperature > 0
    patience: float | None = None
    length_penalty: float | None = None
    suppress_tokens: str = "-1"
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float = 1.0
    # quality guards: re-decode hotter when the text loops or is unlikely (on by default)
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    # Whisper hallucinates " you" on digital silence even when it rates it no-speech (p > 0.9):
    # windows whose RMS is below this (-60 dBFS) are skipped without decoding. None disables.
    silence_rms_threshold: float | None = 1e-3
    # context
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    prompt_reset_on_temperature: float = 0.5
    # word timestamps (runtime.words): punctuation is merged into the neighbouring word
    word_timestamps: bool = False
    prepend_punctuations: str = "\"'“¿([{-"
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"
    # language detection when ``language`` is None on a multilingual model (runtime.decoding.language):
    # one language per input ("file") or per chunk ("chunk"); detections whose best language is
    # less likely than the threshold are not trusted
    language_detection: str = "file"
    language_threshold: float = 0.5
    # input: a truncated file is an error, unless this is set; then what it holds is transcribed
    # (runtime.audio.decode warns with the second its data ends at)
    allow_truncated: bool = False

    def __post_init__(self) -> None:
        if self.language_detection not in DETECTION_MODES:
            raise ValueError(f"language_detection must be one of {', '.join(DETECTION_MODES)}, "
                             f"not {self.language_detection!r}")
        if not 0.0 <= self.language_threshold <= 1.0:
            raise ValueError("language_threshold must be between 0 and 1")

    def decoding_options(self, temperature: float, prompt: list[int] | None,
                         language: str | None) -> DecodingOptions:
        """The per-window options for one temperature: beam search at 0, best_of sampling above."""
        return DecodingOptions(
            task=self.task, language=language, temperature=temperature,
            beam_size=self.beam_size if temperature == 0 else None,
            patience=self.patience if temperature == 0 and self.beam_size else None,
            best_of=self.best_of if temperature > 0 else None,
            length_penalty=self.length_penalty, prompt=tuple(prompt) if prompt else None,
            suppress_tokens=self.suppress_tokens, suppress_blank=self.suppress_blank,
            without_timestamps=self.without_timestamps,
            max_initial_timestamp=self.max_initial_timestamp)


def initial_prompt_tokens(tokenizer: Tokenizer, prompt: str | None, n_text_ctx: int) -> list[int]:
    """The initial prompt's tokens, at most the last ``n_text_ctx // 2 - 1`` (223): all Whisper
    reads, as openai-whisper cuts it. A longer prompt is cut here and a warning says so: a long
    prompt that repeats itself is often copied into the transcript."""
    if not prompt:
        return []
    tokens = tokenizer.encode(" " + prompt.strip())
    limit = n_text_ctx // 2 - 1
    if len(tokens) > limit:
        _warn_long_prompt(len(tokens), limit, tokenizer.decode(tokens[-limit:]).strip())
        tokens = tokens[-limit:]
    return tokens


@functools.lru_cache(maxsize=16)
def _warn_long_prompt(n_tokens: int, limit: int, kept: str) -> None:
    """Once per prompt, not once per input of a job."""
    log.warning("the initial prompt is %d tokens; Whisper reads only its last %d (from %r): the "
                "rest is ignored, and a long repetitive prompt tends to be copied into the text",
                n_tokens, limit, kept[:40] + ("..." if len(kept) > 40 else ""))


def needs_fallback(result: DecodingResult, options: TranscribeOptions) -> bool:
    """True when a window's text loops or is unlikely, unless the window is silence."""
    bad = False
    if (options.compression_ratio_threshold is not None
            and result.compression_ratio > options.compression_ratio_threshold):
        bad = True
    if options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
        bad = True
    if (options.no_speech_threshold is not None
            and result.no_speech_prob > options.no_speech_threshold
            and options.logprob_threshold is not None
            and result.avg_logprob < options.logprob_threshold):
        bad = False  # silence: a low log-probability is expected, not a failure
    return bad


def decode_with_fallback(session: Session, features, tokenizer: Tokenizer,
                         options: TranscribeOptions, prompt: list[int] | None,
                         language: str | None) -> DecodingResult:
    result = None
    for t in options.temperatures:
        opts = options.decoding_options(t, prompt, language)
        result = decode(session, features, tokenizer, opts)[0]
        if not needs_fallback(result, options):
            break
    assert result is not None
    return result


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
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < options.silence_rms_threshold


def split_segments(result: DecodingResult, tokenizer: Tokenizer, time_offset: float,
                   segment_frames: int) -> tuple[list[dict], int]:
    """Cut a window's tokens at consecutive timestamp pairs; return segments and frames to seek."""
    ts_begin = tokenizer.special.timestamp_begin
    tokens = np.array(result.tokens, dtype=np.int64)
    is_ts = tokens >= ts_begin
    single_ending = len(tokens) >= 2 and is_ts[-2:].tolist() == [False, True]
    consecutive = list(np.flatnonzero(is_ts[:-1] & is_ts[1:]) + 1)
    pieces: list[dict] = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_ending else [])
        last = 0
        for current in slices:
            part = tokens[last:current]
            pieces.append(dict(start=time_offset + (part[0] - ts_begin) * TIME_PRECISION,
                               end=time_offset + (part[-1] - ts_begin) * TIME_PRECISION,
                               tokens=part.tolist()))
            last = current
        seek = (segment_frames if single_ending
                else int(tokens[last - 1] - ts_begin) * INPUT_STRIDE)
    else:
        duration = segment_frames / FRAMES_PER_SECOND
        stamps = tokens[is_ts]
        if len(stamps) and stamps[-1] != ts_begin:
            duration = (stamps[-1] - ts_begin) * TIME_PRECISION
        pieces.append(dict(start=time_offset, end=time_offset + duration, tokens=tokens.tolist()))
        seek = segment_frames
    return pieces, seek


def transcribe_sequential(session: Session, tokenizer: Tokenizer, audio: np.ndarray,
                          options: TranscribeOptions, language: str | None,
                          progress: Callable[[float], None] | None = None,
                          aligner: WordAligner | None = None) -> list[Segment]:
    """Transcribe ``audio`` (16 kHz float32) window by window; segments in absolute time.
    With an ``aligner`` (``options.word_timestamps``) segments carry words, and the next
    window starts after the last word, as in openai-whisper."""
    n_mels = session.model.dims.n_mels
    mel = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_SAMPLES)
    content_frames = mel.shape[-1] - N_FRAMES
    seek, segments, all_tokens, prompt_reset = 0, [], [], 0
    initial = initial_prompt_tokens(tokenizer, options.initial_prompt, session.model.dims.n_text_ctx)
    all_tokens.extend(initial)
    last_speech = 0.0
    while seek < content_frames:
        frames = min(N_FRAMES, content_frames - seek)
        if is_digital_silence(audio[seek * HOP_LENGTH: (seek + frames) * HOP_LENGTH], options):
            seek += frames
            if progress:
                progress(seek / FRAMES_PER_SECOND)
            continue
        window = pad_or_trim(mel[:, seek: seek + frames], N_FRAMES)[None]
        features = session.encode(window)
        prompt = all_tokens[prompt_reset:]
        result = decode_with_fallback(session, features, tokenizer, options, prompt,
                                      _window_language(session, features, tokenizer, options,
                                                       language))
        if is_silence(result, options):
            seek += frames
        else:
            pieces, advance = split_segments(result, tokenizer, seek * HOP_LENGTH / SAMPLE_RATE,
                                             frames)
            if aligner is not None:
                last_speech, advance = _add_words(aligner, features, result, pieces, seek,
                                                  frames, advance, last_speech, options)
            tag_language(pieces, result, options)
            for piece in pieces:
                text = tokenizer.decode(piece["tokens"])
                if piece["start"] == piece["end"] or not text.strip():
                    continue
                segments.append(make_segment(len(segments), seek, piece, text, result))
                all_tokens.extend(piece["tokens"])
            seek += advance
            if not options.condition_on_previous_text or result.temperature > options.prompt_reset_on_temperature:
                prompt_reset = len(all_tokens)
        if progress:
            progress(min(seek, content_frames) / FRAMES_PER_SECOND)
    return segments


def _window_language(session: Session, features, tokenizer: Tokenizer,
                     options: TranscribeOptions, language: str | None) -> str | None:
    """The input's language, or with ``language_detection="chunk"`` this window's own (when
    its detection is confident)."""
    if (options.language_detection != "chunk" or options.language is not None
            or not tokenizer.multilingual):
        return language
    _, probs = detect_language(session, features, tokenizer)
    return chunk_languages(probs, options.language_threshold, language or "en")[0]


def annotate_pieces(pieces: list[dict], result: DecodingResult, time_offset: float,
                    tokenizer: Tokenizer, options: TranscribeOptions) -> None:
    """What a chunk's pieces carry beyond text (the batched path): words when it was aligned,
    with the chunk's start as the last speech before it, and its language in per-chunk mode."""
    attach_words(pieces, result, time_offset, tokenizer, options, time_offset)
    tag_language(pieces, result, options)


def tag_language(pieces: list[dict], result: DecodingResult, options: TranscribeOptions) -> None:
    """With per-chunk detection, each piece records the language its window was decoded in."""
    if options.language_detection == "chunk":
        for piece in pieces:
            piece["language"] = result.language


def _add_words(aligner: WordAligner, features, result: DecodingResult, pieces: list[dict],
               seek: int, frames: int, advance: int, last_speech: float,
               options: TranscribeOptions) -> tuple[float, int]:
    """Words of one window onto its pieces; returns the last speech timestamp and the advance,
    which moves to the last word's end unless the window ended on a single timestamp."""
    align_windows(aligner, features, [result], [frames], [options])
    offset = seek * HOP_LENGTH / SAMPLE_RATE
    attach_words(pieces, result, offset, aligner.tokenizer, options, last_speech)
    tokens, ts_begin = result.tokens, aligner.tokenizer.special.timestamp_begin
    single_ending = len(tokens) >= 2 and tokens[-2] < ts_begin <= tokens[-1]
    end = last_word_end(pieces)
    if not single_ending and end is not None and end > offset:
        advance = round(end * FRAMES_PER_SECOND) - seek
    return (last_speech if end is None else end), advance


def align_windows(aligner: WordAligner, features, results: Sequence[DecodingResult],
                  n_frames: Sequence[int], options: Sequence[TranscribeOptions]) -> None:
    """Word timings of every window of ``features`` whose options ask for them (silence aside),
    in one more decoder pass; each is stored as its result's ``alignment``."""
    eot = aligner.tokenizer.special.eot
    requests = []
    for result, frames, opts in zip(results, n_frames, options):
        wanted = opts.word_timestamps and not is_silence(result, opts)
        pieces = split_segments(result, aligner.tokenizer, 0.0, frames)[0] if wanted else []
        requests.append(AlignRequest(window_text_tokens(pieces, eot), frames, result.language,
                                     opts.task))
    for result, opts, words in zip(results, options, aligner.align(features, requests)):
        if opts.word_timestamps:
            result.alignment = words


def attach_words(pieces: list[dict], result: DecodingResult, time_offset: float,
                 tokenizer: Tokenizer, options: TranscribeOptions,
                 last_speech_timestamp: float) -> float:
    """Words of an aligned window onto its pieces (in place; none without an alignment).
    Returns the new last speech timestamp."""
    if result.alignment is None:
        return last_speech_timestamp
    return add_word_timestamps(pieces, result.alignment, time_offset, tokenizer.special.eot,
                               last_speech_timestamp,
                               Punctuation(options.prepend_punctuations,
                                           options.append_punctuations))


def make_segment(index: int, seek: int, piece: dict, text: str, result: DecodingResult) -> Segment:
    """A Segment from one piece cut by ``split_segments`` (with ``words`` when they were
    attached) and the window's decoding result."""
    words = piece.get("words")
    return Segment(id=index, seek=seek, start=round(float(piece["start"]), 3),
                   end=round(float(piece["end"]), 3), text=text,
                   tokens=tuple(int(t) for t in piece["tokens"]), temperature=result.temperature,
                   avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
                   no_speech_prob=result.no_speech_prob, language=piece.get("language"),
                   words=None if words is None else tuple(
                       Word(start=float(w["start"]), end=float(w["end"]), word=w["word"],
                            probability=float(w["probability"])) for w in words))

