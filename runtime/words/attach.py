"""Words onto segments: punctuation merged, long words clipped, segment edges moved to the words.

This is openai-whisper's ``add_word_timestamps`` over the segments one window was cut into
(``runtime.pipeline.segments.split_segments`` pieces: dicts with ``start``, ``end``, ``tokens``),
given that window's alignment. Pieces get a ``words`` list and may get new ``start``/``end``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from runtime.words.align import WordTiming

SENTENCE_END_MARKS = ".。!！?？"


@dataclass(frozen=True)
class Punctuation:
    prepend: str = "\"'“¿([{-"  # merged with the following word
    append: str = "\"'.。,，!！?？:：”)]}、"  # merged with the preceding word


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one
    (in place; merged entries are left with no text and no tokens)."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def _clip_sentence_ends(alignment: list[WordTiming], max_duration: float) -> None:
    """Words at sentence boundaries no longer than twice the median word duration."""
    for i in range(1, len(alignment)):
        if alignment[i].end - alignment[i].start > max_duration:
            if alignment[i].word in SENTENCE_END_MARKS:
                alignment[i].end = alignment[i].start + max_duration
            elif alignment[i - 1].word in SENTENCE_END_MARKS:
                alignment[i].start = alignment[i].end - max_duration


def add_word_timestamps(
    pieces: list[dict],
    alignment: list[WordTiming],
    time_offset: float,
    eot: int,
    last_speech_timestamp: float,
    punctuation: Punctuation = Punctuation(),
) -> float:
    """Give each piece its ``words`` (dicts: word, start, end, probability; absolute seconds)
    and align its edges with them. Returns the new last speech timestamp (the last word's end)."""
    if not pieces:
        return last_speech_timestamp
    alignment = copy.deepcopy(alignment)
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    max_duration = median * 2
    if len(durations):
        _clip_sentence_ends(alignment, max_duration)
    merge_punctuations(alignment, punctuation.prepend, punctuation.append)
    index = 0
    for piece in pieces:
        n_text = sum(1 for t in piece["tokens"] if t < eot)
        saved, words = 0, []
        while index < len(alignment) and saved < n_text:
            timing = alignment[index]
            if timing.word:
                words.append(
                    dict(
                        word=timing.word,
                        start=round(time_offset + timing.start, 2),
                        end=round(time_offset + timing.end, 2),
                        probability=timing.probability,
                    )
                )
            saved += len(timing.tokens)
            index += 1
        if words:
            _fit_edges(piece, words, median, max_duration, last_speech_timestamp)
            last_speech_timestamp = piece["end"]
        piece["words"] = words
    return last_speech_timestamp


def _fit_edges(
    piece: dict, words: list[dict], median: float, max_duration: float, last_speech_timestamp: float
) -> None:
    """Shorten overlong first words after a pause; prefer the segment's own edge where the first
    or last word is too long, else move the segment's edge to the word's."""
    first = words[0]
    if first["end"] - last_speech_timestamp > median * 4 and (
        first["end"] - first["start"] > max_duration
        or (len(words) > 1 and words[1]["end"] - first["start"] > max_duration * 2)
    ):
        if len(words) > 1 and words[1]["end"] - words[1]["start"] > max_duration:
            boundary = max(words[1]["end"] / 2, words[1]["end"] - max_duration)
            first["end"] = words[1]["start"] = boundary
        first["start"] = max(0, first["end"] - max_duration)
    if piece["start"] < first["end"] and piece["start"] - 0.5 > first["start"]:
        first["start"] = max(0, min(first["end"] - median, piece["start"]))
    else:
        piece["start"] = first["start"]
    last = words[-1]
    if piece["end"] > last["start"] and piece["end"] + 0.5 < last["end"]:
        last["end"] = max(last["start"] + median, piece["end"])
    else:
        piece["end"] = last["end"]


def last_word_end(pieces: list[dict]) -> float | None:
    """End of the last word of the last piece that has words, else that piece's end
    (openai-whisper's ``get_end``)."""
    ends = [w["end"] for p in pieces for w in p.get("words", ())]
    if ends:
        return ends[-1]
    return pieces[-1]["end"] if pieces else None
