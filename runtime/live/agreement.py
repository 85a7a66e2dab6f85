"""Which words of a growing turn are stable: local agreement (as in whisper_streaming's
LocalAgreement-2). Each partial re-decodes the whole turn; the words that two consecutive
partials agree on, from the start, will not flicker, and only those are sent. What was sent is
never taken back (OpenAI's deltas only append), so a later partial that disagrees with it
simply adds nothing until it agrees again."""

from __future__ import annotations

import string

_EDGES = string.punctuation + "\u2026"


def key(word: str) -> str:
    """What two partials must agree on: the word, not its case or trailing punctuation (which
    Whisper revises as the sentence grows: "country" then "country,")."""
    return word.strip(_EDGES).lower()


def common_prefix(a: list[str], b: list[str]) -> list[str]:
    """The words of ``b`` (the newer) that agree with ``a`` from the start."""
    n = 0
    for x, y in zip(a, b):
        if key(x) != key(y):
            break
        n += 1
    return b[:n]


class LocalAgreement:
    """Stable words of one turn. Words compare by ``key``; what was sent keeps the form it was
    sent in, and the final transcript (``Completed``) has the final punctuation."""

    def __init__(self) -> None:
        self.previous: list[str] = []  # the last partial's words
        self.sent: list[str] = []  # the stable words handed out so far

    def update(self, words: list[str]) -> list[str]:
        """A new partial's words; returns the words that became stable (to send now)."""
        agreed = common_prefix(self.previous, words)
        self.previous = words
        if len(agreed) <= len(self.sent) or len(common_prefix(self.sent, agreed)) < len(self.sent):
            return []
        new = agreed[len(self.sent) :]
        self.sent = self.sent + new  # the words as sent, whatever form they take later
        return new

    def rest_of(self, final: list[str]) -> list[str] | None:
        """The final's words after those sent, or None when the final revised a sent word."""
        if len(common_prefix(self.sent, final)) < len(self.sent):
            return None
        return final[len(self.sent) :]

    def unstable(self) -> list[str]:
        """The last partial's words after the stable ones (for a display)."""
        if len(common_prefix(self.sent, self.previous)) < len(self.sent):
            return []
        return self.previous[len(self.sent) :]
