"""Errors the runtime raises for what a user can act on. Each message says what was wrong and
what to do; the CLI prints one as one line and exits with status 2."""

from __future__ import annotations


class WhisperRuntimeError(Exception):
    """Base of every error the runtime reports as one line (not a bug: no traceback)."""


class RuntimeInputError(WhisperRuntimeError):
    """A problem with what the user gave us (files, names, options): the server answers 400."""


class AudioError(RuntimeInputError):
    """Audio that cannot be read: missing, empty, corrupt, truncated or not audio at all."""


class TruncatedAudioError(AudioError):
    """Audio whose data ends early: its first ``readable_s`` seconds decode. The message offers
    to transcribe those (``allow_truncated``); ``message(how)`` words the offer for another
    front end (the server's form field)."""

    def __init__(self, problem: str, readable_s: float) -> None:
        self.problem, self.readable_s = problem, readable_s
        super().__init__(self.message())

    def message(self, how: str = "pass --allow-truncated (allow_truncated=True)") -> str:
        return (
            f"{self.problem}; re-download or re-export the file, or {how} to transcribe "
            f"its first {self.readable_s:.1f} s"
        )


class ModelNotFoundError(RuntimeInputError):
    """A model name or path that does not resolve to weights we can read."""


class ModelFormatError(RuntimeInputError):
    """A model folder whose files are present but malformed or of an unsupported layout."""


class ProfileError(RuntimeInputError):
    """An unknown profile name, or a profile file that does not validate."""


class BackendUnavailableError(WhisperRuntimeError):
    """A backend that cannot run here (package missing, device absent, provider failed)."""


class UnsupportedRequestError(RuntimeInputError):
    """A request the loaded model or backend cannot serve: another language or a translation from
    an English-only model, word timestamps from a backend that returns no cross-attention."""


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters (a newline in a file name) escaped
    as Python writes them (``\\n``), so every error stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
