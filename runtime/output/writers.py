"""Output writers: txt, json, srt, vtt, tsv. One base class with an ``extension`` attribute.

Plugins can add writers; ``WRITERS`` holds the built-in ones by format name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from runtime.output.results import Segment, Transcription
from runtime.output.subtitles import SubtitleOptions, word_cues


def format_timestamp(
    seconds: float, always_include_hours: bool = False, decimal_marker: str = "."
) -> str:
    """12.3456 -> '00:12.346' (or '00:00:12,346' for SRT)."""
    if seconds < 0:
        raise ValueError("non-negative timestamp expected")
    ms = round(seconds * 1000.0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1_000)
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


class Writer:
    extension: str = ""

    def __init__(self, subtitles: SubtitleOptions | None = None) -> None:
        self.subtitles = subtitles or SubtitleOptions()

    def write(self, result: Transcription, file: TextIO) -> None:
        raise NotImplementedError

    def to_string(self, result: Transcription) -> str:
        import io

        buf = io.StringIO()
        self.write(result, buf)
        return buf.getvalue()

    def write_to_dir(self, result: Transcription, output_dir: Path, stem: str) -> Path:
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / f"{stem}.{self.extension}"
        tmp = path.with_suffix(path.suffix + ".part")
        with open(tmp, "w", encoding="utf-8") as f:  # write then rename: no half-written outputs
            self.write(result, f)
        tmp.replace(path)
        return path


class TextWriter(Writer):
    extension = "txt"

    def write(self, result: Transcription, file: TextIO) -> None:
        for segment in result.segments:
            print(segment.text.strip(), file=file)


class JsonWriter(Writer):
    extension = "json"

    def write(self, result: Transcription, file: TextIO) -> None:
        json.dump(result.to_dict(), file, ensure_ascii=False, indent=1)
        file.write("\n")


class _SubtitleWriter(Writer):
    always_include_hours: bool = False
    decimal_marker: str = "."

    def stamp(self, seconds: float) -> str:
        return format_timestamp(seconds, self.always_include_hours, self.decimal_marker)

    def cues(self, result: Transcription) -> Iterator[tuple[str, str, str]]:
        """(start, end, text) per cue: one per segment, or cut from the words when segments
        carry them (``runtime.output.subtitles``)."""
        if result.segments and result.segments[0].words is not None:
            for start, end, text in word_cues(result.segments, self.subtitles):
                yield self.stamp(start), self.stamp(end), text.replace("-->", "->")
            return
        for segment in result.segments:
            text = segment.text.strip().replace("-->", "->")
            if text:
                yield self.stamp(segment.start), self.stamp(segment.end), text


class VttWriter(_SubtitleWriter):
    extension = "vtt"

    def write(self, result: Transcription, file: TextIO) -> None:
        print("WEBVTT\n", file=file)
        for start, end, text in self.cues(result):
            print(f"{start} --> {end}\n{text}\n", file=file)


class SrtWriter(_SubtitleWriter):
    extension = "srt"
    always_include_hours = True
    decimal_marker = ","

    def write(self, result: Transcription, file: TextIO) -> None:
        for i, (start, end, text) in enumerate(self.cues(result), start=1):
            print(f"{i}\n{start} --> {end}\n{text}\n", file=file)


class TsvWriter(Writer):
    """Start and end in integer milliseconds, tab-separated (openai-whisper's tsv)."""

    extension = "tsv"

    def write(self, result: Transcription, file: TextIO) -> None:
        print("start", "end", "text", sep="\t", file=file)
        for segment in result.segments:
            text = segment.text.strip().replace("\t", " ")
            print(round(1000 * segment.start), round(1000 * segment.end), text, sep="\t", file=file)


WRITERS: dict[str, type[Writer]] = {
    w.extension: w for w in (TextWriter, JsonWriter, SrtWriter, VttWriter, TsvWriter)
}


def segment_text(segments: tuple[Segment, ...] | list[Segment]) -> str:
    return "".join(s.text for s in segments).strip()
