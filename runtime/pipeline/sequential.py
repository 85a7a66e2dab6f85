"""The sequential reference path: 30 s windows, each seeking to the last timestamp of the previous.

This is the long-form algorithm Whisper users know (openai-whisper's ``transcribe``), kept as
named steps: window, decode with fallback (``BatchRunner``, one row at a time), cut into
segments, advance. The batched path is measured against it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runtime.audio.constants import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from runtime.audio.mel import log_mel_spectrogram, pad_or_trim
from runtime.decoding import DecodingResult
from runtime.output.results import Segment
from runtime.pipeline.options import TranscribeOptions, initial_prompt_tokens
from runtime.pipeline.runner import BatchRunner, Row, SequentialInput
from runtime.pipeline.segments import (
    attach_words,
    emit_segments,
    is_digital_silence,
    is_silence,
    split_segments,
    tag_language,
)
from runtime.pipeline.window import Window
from runtime.words.attach import last_word_end


def transcribe_sequential(
    runner: BatchRunner,
    audio: np.ndarray,
    options: TranscribeOptions,
    language: str | None,
    progress: Callable[[float], None] | None = None,
) -> list[Segment]:
    """Transcribe ``audio`` (16 kHz float32) window by window; segments in absolute time.
    With ``options.word_timestamps`` segments carry words, and the next window starts after
    the last word, as in openai-whisper."""
    session, tokenizer = runner.session, runner.tokenizer
    mel = log_mel_spectrogram(audio, n_mels=session.model.dims.n_mels, padding=N_SAMPLES)
    content_frames = mel.shape[-1] - N_FRAMES
    source = SequentialInput(options, language)
    seek, prompt_reset = 0, 0
    segments: list[Segment] = []
    all_tokens = initial_prompt_tokens(
        tokenizer, options.initial_prompt, session.model.dims.n_text_ctx
    )
    last_speech = 0.0
    while seek < content_frames:
        frames = min(N_FRAMES, content_frames - seek)
        if is_digital_silence(audio[seek * HOP_LENGTH : (seek + frames) * HOP_LENGTH], options):
            seek += frames
            if progress:
                progress(seek / FRAMES_PER_SECOND)
            continue
        features = session.encode(pad_or_trim(mel[:, seek : seek + frames], N_FRAMES)[None])
        row = Row(Window(mel, seek, frames, 0.0), all_tokens[prompt_reset:], source)
        result = runner.decode_rows(features, [row])[0]
        if is_silence(result, options):
            seek += frames
        else:
            pieces, advance = split_segments(
                result, tokenizer, seek * HOP_LENGTH / SAMPLE_RATE, frames
            )
            if options.word_timestamps:
                last_speech, advance = _add_words(
                    runner, result, pieces, seek, advance, last_speech, options
                )
            tag_language(pieces, result, options)
            new, kept, _ = emit_segments(pieces, tokenizer, result, seek, len(segments))
            segments += new
            all_tokens += kept
            seek += advance
            if (
                not options.condition_on_previous_text
                or result.temperature > options.prompt_reset_on_temperature
            ):
                prompt_reset = len(all_tokens)
        if progress:
            progress(min(seek, content_frames) / FRAMES_PER_SECOND)
    return segments


def _add_words(
    runner: BatchRunner,
    result: DecodingResult,
    pieces: list[dict],
    seek: int,
    advance: int,
    last_speech: float,
    options: TranscribeOptions,
) -> tuple[float, int]:
    """The aligned window's words onto its pieces; returns the last speech timestamp and the
    advance, which moves to the last word's end unless the window ended on a single timestamp."""
    offset = seek * HOP_LENGTH / SAMPLE_RATE
    attach_words(pieces, result, offset, runner.tokenizer, options, last_speech)
    tokens, ts_begin = result.tokens, runner.tokenizer.special.timestamp_begin
    single_ending = len(tokens) >= 2 and tokens[-2] < ts_begin <= tokens[-1]
    end = last_word_end(pieces)
    if not single_ending and end is not None and end > offset:
        advance = round(end * FRAMES_PER_SECOND) - seek
    return (last_speech if end is None else end), advance
