"""What a transcription is asked to do: ``TranscribeOptions`` (decoding, quality guards, context,
words, language) and ``BatchOptions`` (how windows are grouped). These dataclasses hold the
defaults, once: the settings (``runtime.config.settings``) take theirs from here, and every entry
point (CLI flags, ``Runtime.transcribe`` keywords, server fields) overrides only what it was given.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Literal

from runtime.audio.vad import VadOptions
from runtime.decoding import DecodingOptions
from runtime.decoding.language import DETECTION_MODES

if TYPE_CHECKING:
    from runtime.model.tokenizer import Tokenizer

log = logging.getLogger(__name__)
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Whisper's fallback ladder


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
    temperatures: tuple[float, ...] = TEMPERATURES
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
    # language detection when ``language`` is None on a multilingual model
    # (runtime.decoding.language): one language per input ("file") or per chunk ("chunk");
    # detections whose best language is less likely than the threshold are not trusted
    language_detection: str = "file"
    language_threshold: float = 0.5
    # input: a truncated file is an error, unless this is set; then what it holds is transcribed
    # (runtime.audio.decode warns with the second its data ends at)
    allow_truncated: bool = False

    def __post_init__(self) -> None:
        if self.language_detection not in DETECTION_MODES:
            raise ValueError(
                f"language_detection must be one of {', '.join(DETECTION_MODES)}, "
                f"not {self.language_detection!r}"
            )
        if not 0.0 <= self.language_threshold <= 1.0:
            raise ValueError("language_threshold must be between 0 and 1")

    def decoding_options(
        self, temperature: float, prompt: list[int] | None, language: str | None
    ) -> DecodingOptions:
        """The per-window options for one temperature: beam search at 0, best_of sampling above."""
        return DecodingOptions(
            task=self.task,
            language=language,
            temperature=temperature,
            beam_size=self.beam_size if temperature == 0 else None,
            patience=self.patience if temperature == 0 and self.beam_size else None,
            best_of=self.best_of if temperature > 0 else None,
            length_penalty=self.length_penalty,
            prompt=tuple(prompt) if prompt else None,
            suppress_tokens=self.suppress_tokens,
            suppress_blank=self.suppress_blank,
            without_timestamps=self.without_timestamps,
            max_initial_timestamp=self.max_initial_timestamp,
        )


class Priority(IntEnum):
    """Which inputs' rows run first: lower first, then the oldest input (the engine's and the
    scheduler's ordering key). Live turns come before files so that a server under batch load
    keeps live latency; a request may lower its own, never raise it above NORMAL."""

    LIVE = 0  # a live turn's final text
    PARTIAL = 1  # a live turn's partial text, re-decoded as the turn grows
    NORMAL = 2  # files and uploads
    LOW = 3  # batch work that yields to everything else


Chunking = Literal["vad", "fixed"]  # cut chunks at silences, or plain 30 s windows
DecoderMode = Literal["continuous", "batched", "sequential"]


@dataclass(frozen=True)
class BatchOptions:
    batch_size: int = 8  # windows per batch (encoder call, decoder batch)
    # "continuous": rows join and leave the decoder batch at every step (where the backend's
    # states are joinable; else "batched"); "batched": a batch decodes until its last row ends;
    # "sequential": rows one by one through the same loop
    decoder: DecoderMode = "continuous"
    chunking: Chunking = "vad"  # "fixed": plain 30 s windows
    block_s: float | None = None  # seconds per block (= stream); None: by duration and B
    context_tokens: int = 223  # previous-text tokens per row (0: none); 223 as Whisper's
    context_step: int = 32  # a shorter history prompts in multiples of this many tokens
    prepare_ahead: bool = True  # decode audio, VAD and mel of the next block in a thread
    vad: VadOptions = field(default_factory=VadOptions)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.decoder not in ("continuous", "batched", "sequential"):
            raise ValueError(
                f"decoder must be 'continuous', 'batched' or 'sequential', not {self.decoder!r}"
            )
        if self.chunking not in ("vad", "fixed"):
            raise ValueError(f"chunking must be 'vad' or 'fixed', not {self.chunking!r}")
        if self.context_tokens < 0 or self.context_step < 1:
            raise ValueError("context_tokens must be >= 0 and context_step >= 1")


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
    log.warning(
        "the initial prompt is %d tokens; Whisper reads only its last %d (from %r): the "
        "rest is ignored, and a long repetitive prompt tends to be copied into the text",
        n_tokens,
        limit,
        kept[:40] + ("..." if len(kept) > 40 else ""),
    )
