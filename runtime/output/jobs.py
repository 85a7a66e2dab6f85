"""Batch jobs: many inputs (files, folders, lists of paths), one output per input per format,
resumable.

A job expands folders (recursively, media files only) and input lists into files, maps each file
to its outputs, skips the files whose outputs all exist (unless ``overwrite``), transcribes the
rest (together through ``Runtime.transcribe_many``, or one by one), writes each output atomically
(the writers write a ``.part`` file and rename it, so an interrupted job never leaves a
half-written output that a later run would take as done) and ends with a summary. One input's
failure is reported and never stops the job.

Output layout: an output mirrors its input's folder below the deepest folder that all the job's
inputs share, where a folder given as an input counts as itself and a file as its own folder.
So ``runtime transcribe talks/ -o out`` writes ``out/2024/a.txt`` for ``talks/2024/a.flac``;
files from one folder land flat in ``out``; ``x/a.flac`` and ``y/a.flac`` land in ``out/x`` and
``out/y`` and never overwrite each other. Two inputs in one folder that differ only in extension
(``a.flac``, ``a.mp3``) keep it in their output names (``a.flac.txt``, ``a.mp3.txt``). The
layout depends on the job's inputs, so resume a job with the same inputs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import RuntimeInputError, WhisperRuntimeError, one_line
from runtime.output.results import Transcription

log = logging.getLogger(__name__)

# The file extensions a folder is searched for (a file named on the command line or in an input
# list is tried whatever its extension: FFmpeg reads more than these).
MEDIA_EXTENSIONS = frozenset(
    {
        ".flac",
        ".wav",
        ".mp3",
        ".m4a",
        ".mp4",
        ".ogg",
        ".opus",
        ".webm",
        ".mkv",
        ".aac",
        ".wma",
        ".mov",
        ".avi",
    }
)

Result = tuple["Item", Transcription | None, BaseException | None]


@dataclass(frozen=True)
class JobInput:
    """A file to transcribe and the folder its output layout starts from (see the module doc)."""

    path: Path
    anchor: Path


@dataclass(frozen=True)
class Item:
    """One input of a job and the files it writes (``folder / f"{stem}.{extension}"``)."""

    source: Path
    folder: Path
    stem: str
    outputs: tuple[Path, ...]

    def done(self) -> bool:
        return bool(self.outputs) and all(p.is_file() for p in self.outputs)


@dataclass
class Summary:
    done: list[tuple[Item, float]] = field(default_factory=list)  # with seconds of audio
    skipped: list[Item] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    interrupted: bool = False

    def render(self) -> str:
        seconds = sum(s for _, s in self.done)
        audio = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
        lines = [
            f"{len(self.done)} done ({audio} of audio), {len(self.skipped)} skipped "
            f"(outputs exist), {len(self.failed)} failed"
            + ("; interrupted" if self.interrupted else "")
        ]
        lines += [f"  failed: {reason}" for _, reason in self.failed]
        return "\n".join(lines)


# -- inputs ------------------------------------------------------------------------------------
def read_input_list(path: Path) -> list[str]:
    """Paths, one a line; blank lines and lines starting with ``#`` are skipped. Relative paths
    are relative to the current folder, as on the command line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeInputError(f"input list {path}: cannot be read ({exc})") from exc
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def media_files(folder: Path) -> list[Path]:
    """Media files under ``folder`` (recursive, hidden files and folders left out), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            Path(root, f)
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in MEDIA_EXTENSIONS
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def collect_inputs(
    args: Sequence[str], input_list: Path | None = None
) -> tuple[list[JobInput], list[tuple[str, str]]]:
    """Files to transcribe, in order, each once; and the arguments that yielded none (a folder
    with no media files), with the reason."""
    given = list(args) + (read_input_list(input_list) if input_list else [])
    if not given:
        raise RuntimeInputError("no inputs: name files or folders, or give --input-list")
    inputs, empty, seen = [], [], set()
    for arg in given:
        path = Path(arg)
        if path.is_dir():
            found = [JobInput(f, path) for f in media_files(path)]
            if not found:
                empty.append(
                    (
                        arg,
                        f"{arg}: folder holds no media files "
                        f"({' '.join(sorted(MEDIA_EXTENSIONS))})",
                    )
                )
        else:
            found = [JobInput(path, path.parent)]
        for job_input in found:
            key = os.path.abspath(job_input.path)
            if key not in seen:
                seen.add(key)
                inputs.append(job_input)
    return inputs, empty


def plan_outputs(
    inputs: Sequence[JobInput], output_dir: Path, extensions: Sequence[str]
) -> list[Item]:
    """Each input's output files (the layout of the module docstring)."""
    if not inputs:
        return []
    anchors = [os.path.abspath(i.anchor) for i in inputs]
    try:
        common = Path(os.path.commonpath(anchors))
    except ValueError:  # no common folder (different drives): outputs by file name only
        common = None
    rels = [
        Path(os.path.abspath(i.path)).relative_to(common) if common else Path(i.path.name)
        for i in inputs
    ]
    stems: dict[tuple[Path, str], int] = {}
    for rel in rels:
        key = (rel.parent, rel.stem.casefold())
        stems[key] = stems.get(key, 0) + 1
    items = []
    for job_input, rel in zip(inputs, rels):
        stem = rel.name if stems[(rel.parent, rel.stem.casefold())] > 1 else rel.stem
        folder = output_dir / rel.parent
        items.append(
            Item(
                job_input.path, folder, stem, tuple(folder / f"{stem}.{ext}" for ext in extensions)
            )
        )
    return items


# -- where transcriptions come from ------------------------------------------------------------
def many_results(rt: Any, items: list[Item], **kwargs: Any) -> Iterator[Result]:
    """All items through one ``Runtime.transcribe_many`` call (shared batches), in order."""
    for r in rt.transcribe_many([item.source for item in items], **kwargs):
        yield items[r.index], r.transcription, r.error


def one_by_one_results(
    transcribe: Callable[[Path], Transcription], items: list[Item]
) -> Iterator[Result]:
    """Each item alone (the reference behaviour, and a single input's path)."""
    for item in items:
        try:
            yield item, transcribe(item.source), None
        except Exception as exc:  # noqa: BLE001 - one input's failure never stops the job
            yield item, None, exc


# -- the job -----------------------------------------------------------------------------------
def failure_reason(source: Any, exc: BaseException) -> str:
    """One line naming the input and what went wrong (input errors already name their file;
    a newline in a file name is written ``\\n``)."""
    message = one_line(
        str(exc) if isinstance(exc, WhisperRuntimeError) else f"{type(exc).__name__}: {exc}"
    )
    name = one_line(str(source))
    return message if name in message else f"{name}: {message}"


class Job:
    """Skip what is done, transcribe the rest, write outputs, count; see the module docstring.

    ``echo(item, transcription)`` shows a result as it arrives (input order); ``progress`` shows
    a bar over the whole job in hours of audio on stderr (only when stderr is a terminal)."""

    def __init__(
        self,
        items: list[Item],
        writers: dict[str, type],
        *,
        overwrite: bool = False,
        echo: Callable[[Item, Transcription], None] | None = None,
        progress: bool = True,
        verbose: bool = False,
    ) -> None:
        self.items, self.writers, self.overwrite = items, writers, overwrite
        self.echo, self.progress, self.verbose = echo, progress, verbose
        self.summary = Summary()

    def todo(self) -> list[Item]:
        """The items to transcribe; the others are recorded as skipped."""
        todo = []
        for item in self.items:
            if not self.overwrite and self.writers and item.done():
                self.summary.skipped.append(item)
                if self.verbose:
                    print(f"skip {item.source}: {item.outputs[0]} exists", file=sys.stderr)
            else:
                todo.append(item)
        return todo

    def run(
        self,
        results: Callable[[list[Item]], Iterable[Result]],
        failures: Sequence[tuple[str, str]] = (),
    ) -> Summary:
        """Consume ``results(todo)``; ``failures`` are inputs that failed before (empty folders)."""
        todo = self.todo()
        for source, reason in failures:
            self._fail(source, reason)
        bar = self._bar(todo)
        stream = iter(results(todo)) if todo else iter(())
        try:
            for item, transcription, error in stream:
                with bar.external_write_mode() if bar is not None else nullcontext():
                    self._handle(item, transcription, error)
                if bar is not None:
                    bar.update(transcription.duration / 3600 if transcription else 0.0)
                    bar.set_postfix_str(
                        f"{len(self.summary.done)} done, {len(self.summary.failed)} failed",
                        refresh=True,
                    )
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            getattr(stream, "close", lambda: None)()  # transcribe_many cancels what is left
            if bar is not None:
                bar.close()
        return self.summary

    def _handle(
        self, item: Item, transcription: Transcription | None, error: BaseException | None
    ) -> None:
        if error is not None:
            log.debug("%s failed", item.source, exc_info=error)
            return self._fail(str(item.source), failure_reason(item.source, error))
        # each result holds a transcription or an error (transcribe_many's contract)
        assert transcription is not None, f"{item.source}: neither a transcription nor an error"
        if self.echo:
            self.echo(item, transcription)
        try:
            for writer in self.writers.values():
                out = writer().write_to_dir(transcription, item.folder, item.stem)
                if self.verbose:
                    print(f"wrote {out}", file=sys.stderr)
        except OSError as exc:
            return self._fail(str(item.source), f"{item.source}: cannot write output ({exc})")
        self.summary.done.append((item, transcription.duration))

    def _fail(self, source: str, reason: str) -> None:
        self.summary.failed.append((source, reason))
        print(f"error: {reason}", file=sys.stderr)

    def _bar(self, todo: list[Item]):
        if not (self.progress and len(todo) > 1 and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        from runtime.audio.decode import audio_duration

        total = 0.0
        for item in todo:  # from the files' metadata: no decoding
            with contextlib.suppress(RuntimeInputError):  # it fails again, with its reason,
                total += audio_duration(item.source) or 0.0  # when its turn comes
        return tqdm(
            total=round(total / 3600, 3),
            unit="h",
            desc="job",
            file=sys.stderr,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} h of audio "
            "[{elapsed}<{remaining}] {postfix}",
        )
