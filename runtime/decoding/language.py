"""Which language to decode in: one per input, or one per chunk, from language-token probabilities.

``runtime.decoding.detect_language`` gives, per window, the probability of every language token
after ``<|startoftranscript|>``. A window of silence, music or a few words says little, so a
detection counts only when its best language is at least ``threshold`` likely: the input's
language sums the confident windows of its first batch (all of them when none is confident),
and in per-chunk mode a chunk that is not confident keeps the input's language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DETECTION_MODES = ("file", "chunk")


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    # mean probability of that language over the windows counted; None: given, not detected
    probability: float | None


def _top(probs: dict[str, float]) -> tuple[str, float]:
    code = max(probs, key=probs.__getitem__)
    return code, probs[code]


def file_language(window_probs: Sequence[dict[str, float]], threshold: float) -> LanguageGuess:
    """The input's language from some of its windows' detections (at least one)."""
    if not window_probs:
        raise ValueError("language detection needs at least one window")
    confident = [p for p in window_probs if _top(p)[1] >= threshold] or list(window_probs)
    totals: dict[str, float] = {}
    for probs in confident:
        for code, p in probs.items():
            totals[code] = totals.get(code, 0.0) + p
    code = max(totals, key=totals.__getitem__)
    return LanguageGuess(code, totals[code] / len(confident))


def chunk_languages(
    window_probs: Sequence[dict[str, float]], threshold: float, fallback: str
) -> list[str]:
    """Each window's own language where its detection is confident, else ``fallback``."""
    out = []
    for probs in window_probs:
        code, p = _top(probs)
        out.append(code if p >= threshold else fallback)
    return out
