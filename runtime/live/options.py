"""What a live session is asked to do: turn detection (OpenAI's ``server_vad`` fields) and how
partial and final decodes are scheduled. Wrong values raise ``ValueError`` here, once."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.audio.constants import CHUNK_LENGTH


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's ``server_vad``: speech starts at ``threshold``, ends after
    ``silence_duration_ms`` below it (Silero's hysteresis: threshold - 0.15), and a turn's audio
    begins ``prefix_padding_ms`` before its speech."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500  # OpenAI's documented default

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        if not 0 <= self.prefix_padding_ms <= 10_000:
            raise ValueError("prefix_padding_ms must be between 0 and 10000")
        if not 32 <= self.silence_duration_ms <= 10_000:
            raise ValueError("silence_duration_ms must be between 32 and 10000")


@dataclass(frozen=True)
class LiveOptions:
    # turns: None = manual commits only (OpenAI's turn_detection null)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    # partials: a re-decode of the growing turn at most every this much new speech (ms of audio)
    partials: bool = True
    partial_interval_ms: int = 200
    # finals: the turn's audio up to this much silence after its speech is decoded as soon as
    # the silence reaches it (before the turn is known to be over), so the final is ready
    # about when silence_duration_ms confirms the end
    final_tail_ms: int = 200
    # a turn longer than this is committed at its least likely frame in the last
    # ``cut_search_s`` and continues as a new turn (a window holds 30 s)
    max_turn_s: float = 25.0
    cut_search_s: float = 10.0
    # context: the last words of the turns before, as the next turn's prompt (0: none)
    context_words: int = 100
    # decoding
    language: str | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if self.partial_interval_ms < 50:
            raise ValueError("partial_interval_ms must be at least 50")
        if not 0 <= self.final_tail_ms <= 2000:
            raise ValueError("final_tail_ms must be between 0 and 2000")
        if not 2 * self.cut_search_s <= self.max_turn_s <= CHUNK_LENGTH - 1:
            raise ValueError(
                f"max_turn_s must be between {2 * self.cut_search_s:g} and {CHUNK_LENGTH - 1} s"
            )
        if self.context_words < 0:
            raise ValueError("context_words must be >= 0")
