"""Which words of a growing turn are stable: local agreement (as in whisper_streaming's
LocalAgreement-2). Each partial re-decodes the whole turn; the words that two consecutive
partials agree on, from the start, will not flicker, and only those are sent. What was sent is
never taken back (OpenAI's deltas only append), so a later partial that disagrees with it
simply adds nothing until it agrees again."""

from __future__ import annotations


def common_prefix(a: list[str], b: list[str]) -> list[str]:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


class LocalAgreement:
    """Stable words of one turn. Words compare exactly, punctuation included, so a word whose
    punctuation is still changing ("country," then "country.") waits."""

    def __init__(self) -> None:
        self.previous: list[str] = []  # the last partial's words
        self.sent: list[str] = []  # the stable words handed out so far

    def update(self, words: list[str]) -> list[str]:
        """A new partial's words; returns the words that became stable (to send now)."""
        agreed = common_prefix(self.previous, words)
        self.previous = words
        if len(agreed) <= len(self.sent) or agreed[: len(self.sent)] != self.sent:
            return []
        new = agreed[len(self.sent) :]
        self.sent = agreed
        return new

    def rest_of(self, final: list[str]) -> list[str] | None:
        """The final's words after those sent, or None when the final revised a sent word."""
        if final[: len(self.sent)] != self.sent:
            return None
        return final[len(self.sent) :]

    def unstable(self) -> list[str]:
        """The last partial's words after the stable ones (for a display)."""
        if self.previous[: len(self.sent)] != self.sent:
            return []
        return self.previous[len(self.sent) :]
