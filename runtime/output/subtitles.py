"""Subtitle cues cut from word timings: line width, lines per cue, words per line, highlighting.

openai-whisper's ``SubtitlesWriter.iterate_result`` over typed segments: words flow into lines
of at most ``max_line_width`` characters and cues of at most ``max_line_count`` lines (a pause
over 3 s starts a new cue); without both limits every segment stays one cue. With
``highlight_words`` each word gets a cue of its own in which it is underlined.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict

from runtime.output.results import Segment

LONG_PAUSE_S = 3.0  # a gap this long between words starts a new cue (when cues are cut)


@dataclass(frozen=True)
class SubtitleOptions:
    """How srt/vtt cues are cut when segments carry words (openai-whisper's options)."""

    max_line_width: int | None = None  # characters in a line before it breaks
    max_line_count: int | None = None  # lines in a cue before a new cue starts
    max_words_per_line: int | None = None  # words in a line (no effect with max_line_width)
    highlight_words: bool = False  # one cue per word, the spoken word underlined

    def __post_init__(self) -> None:
        for name in ("max_line_width", "max_line_count", "max_words_per_line"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")


class _Timing(TypedDict):
    word: str  # with its leading space or line break
    start: float
    end: float


def _subtitles(segments: Sequence[Segment], options: SubtitleOptions) -> Iterator[list[_Timing]]:
    """Cues as lists of words (dicts with ``word`` holding its leading space or line break)."""
    preserve_segments = options.max_line_count is None or options.max_line_width is None
    max_width = options.max_line_width or 1000
    per_line = options.max_words_per_line or 1000
    line_len, line_count = 0, 1
    subtitle: list[_Timing] = []
    last = next((s.start for s in segments if s.words), 0.0)
    for segment in segments:
        words = segment.words or ()
        for first in range(0, len(words), per_line):
            for i, w in enumerate(words[first : first + per_line]):
                timing = _Timing(word=w.word, start=w.start, end=w.end)
                long_pause = not preserve_segments and timing["start"] - last > LONG_PAUSE_S
                has_room = line_len + len(timing["word"]) <= max_width
                seg_break = i == 0 and len(subtitle) > 0 and preserve_segments
                if line_len > 0 and has_room and not long_pause and not seg_break:
                    line_len += len(timing["word"])  # the line goes on
                else:
                    timing["word"] = timing["word"].strip()
                    if subtitle and (
                        (
                            options.max_line_count is not None
                            and (long_pause or line_count >= options.max_line_count)
                        )
                        or seg_break
                    ):
                        yield subtitle  # a new cue
                        subtitle, line_count = [], 1
                    elif line_len > 0:
                        line_count += 1  # a new line
                        timing["word"] = "\n" + timing["word"]
                    line_len = len(timing["word"].strip())
                subtitle.append(timing)
                last = timing["start"]
    if subtitle:
        yield subtitle


def word_cues(
    segments: Sequence[Segment], options: SubtitleOptions
) -> Iterator[tuple[float, float, str]]:
    """(start, end, text) of every cue, in seconds."""
    for subtitle in _subtitles(segments, options):
        text = "".join(w["word"] for w in subtitle)
        if not options.highlight_words:
            yield subtitle[0]["start"], subtitle[-1]["end"], text
            continue
        last = subtitle[0]["start"]
        for i, word in enumerate(subtitle):
            if last != word["start"]:
                yield last, word["start"], text  # the gap before the word, nothing underlined
            yield (
                word["start"],
                word["end"],
                "".join(
                    re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", w["word"]) if j == i else w["word"]
                    for j, w in enumerate(subtitle)
                ),
            )
            last = word["end"]
