"""Typed results of a transcription (faster-whisper style), with ``to_dict()`` for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int  # mel frame where the window that produced this segment starts
    start: float  # seconds from the start of the audio
    end: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] | None = None  # with word timestamps
    language: str | None = None  # the chunk's own language, with per-chunk detection

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens"] = list(self.tokens)
        if self.words is None:
            d.pop("words")
        else:
            d["words"] = [asdict(w) for w in self.words]
        if self.language is None:
            d.pop("language")
        return d


@dataclass(frozen=True)
class RunInfo:
    """What actually ran: recorded so results say which backend and device produced them."""

    model: str
    backend: str
    device: str
    profile: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Transcription:
    text: str
    segments: tuple[Segment, ...]
    language: str
    duration: float  # seconds of audio
    language_probability: float | None = None
    run: RunInfo | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.duration,
            "segments": [s.to_dict() for s in self.segments],
            "run": asdict(self.run) if self.run else None,
            "timings": dict(self.timings),
        }
