"""What a live session reports, free of any protocol: the server maps these onto OpenAI's
Realtime events (``runtime.server.realtime``), ``runtime transcribe --live`` onto lines.

Times are milliseconds of the session's audio (everything appended since it began), as in
OpenAI's ``audio_start_ms`` / ``audio_end_ms``.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from runtime.errors import RuntimeInputError

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """OpenAI's id style: ``item_`` and 21 letters or digits."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


class LiveError(RuntimeInputError):
    """A client request the session refuses (an empty commit, a buffer over its limit): one
    line, with OpenAI's error code; the session carries on."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int  # where the turn's audio begins (its prefix padding included)


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int  # where the silence that ended it was long enough (or the turn was cut)


@dataclass(frozen=True)
class Committed:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True)
class Cleared:
    pass


@dataclass(frozen=True)
class Partial:
    """The whole current hypothesis of a turn (stable words first): for displays that can
    rewrite a line; protocols that only append use ``Delta``."""

    item_id: str
    stable: str
    unstable: str


@dataclass(frozen=True)
class Delta:
    """Text appended to a turn's transcript: words two partials agreed on, or the rest of the
    final. Joined, a turn's deltas are its final transcript unless the final revised a word
    already sent (``Completed`` is then the truth)."""

    item_id: str
    delta: str


@dataclass(frozen=True)
class Completed:
    item_id: str
    transcript: str
    audio_seconds: float  # of the committed audio


@dataclass(frozen=True)
class Failed:
    item_id: str
    message: str


Event = SpeechStarted | SpeechStopped | Committed | Cleared | Partial | Delta | Completed | Failed
