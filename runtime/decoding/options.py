"""Options and results of decoding one batch of 30-second windows."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DecodingOptions:
    # what to do
    task: str = "transcribe"  # or "translate"
    language: str | None = None  # None on a multilingual model: detect
    # sampling
    temperature: float = 0.0
    sample_len: int | None = None  # max tokens to sample; None = half the text context
    best_of: int | None = None  # independent samples when temperature > 0
    beam_size: int | None = None  # beam search when temperature == 0
    patience: float | None = None  # beam search patience (arXiv:2204.05424)
    length_penalty: float | None = None  # None = simple length normalization
    # context
    prompt: tuple[int, ...] | None = None  # previous-text tokens (<|startofprev|> context)
    prefix: tuple[int, ...] | None = None  # forced start of the current window's text
    # filtering
    suppress_tokens: tuple[int, ...] | str | None = "-1"  # "-1": non-speech symbols
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    seed: int = 0  # sampling is reproducible

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', not {self.task!r}")
        if self.beam_size is not None and self.best_of is not None:
            raise ValueError("best_of with beam_size is not supported")
        if self.temperature == 0 and self.best_of is not None:
            raise ValueError("best_of with greedy sampling (temperature 0) is meaningless")
        if self.patience is not None and self.beam_size is None:
            raise ValueError("patience requires beam_size")
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise ValueError("length_penalty (alpha) should be between 0 and 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")


@dataclass
class DecodingResult:
    """One window's decoded tokens (after the start sequence, without end-of-text) and scores."""

    tokens: list[int]
    text: str
    language: str | None
    avg_logprob: float
    sum_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = field(init=False)
    language_probs: dict[str, float] | None = None
    # word timings of the window's segments, set after decoding when asked (runtime.words)
    alignment: list | None = None

    def __post_init__(self) -> None:
        self.compression_ratio = compression_ratio(self.text)


def compression_ratio(text: str) -> float:
    """How repetitive a text is: high ratios (> 2.4) flag Whisper's repetition loops."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
