"""The ``runtime`` command: ``transcribe``, ``detect``, ``profiles`` and ``serve``.

Bad input never prints a traceback: one line names the file and the problem, the other files
are still transcribed, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.errors import RuntimeInputError, WhisperRuntimeError
from runtime.output.writers import WRITERS, format_timestamp

EXIT_BAD_INPUT = 2


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio or video files")
    p.add_argument(
        "files",
        nargs="*",
        help="audio/video files (any format FFmpeg reads) or folders (searched "
        "recursively for media files); several go through shared batches",
    )
    p.add_argument(
        "--input-list",
        type=Path,
        default=None,
        help="a file of inputs, one path a line (blank lines and # comments skipped)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model short name (tiny.en, base) or a model folder (default: tiny.en)",
    )
    _add_selection(p)
    p.add_argument(
        "--language",
        default=None,
        help="spoken language (code or name); default: detect (English for .en models)",
    )
    p.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    p.add_argument(
        "--beam-size",
        type=int,
        default=None,
        help="beam search width at temperature 0 (default: greedy)",
    )
    p.add_argument(
        "--best-of", type=int, default=None, help="samples when falling back to t > 0 (default: 5)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="a single sampling temperature (default: 0 with fallback up to 1.0)",
    )
    p.add_argument(
        "--no-fallback",
        action="store_true",
        help="disable temperature fallback (decode at the first temperature only)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="chunks per encoder/decoder batch (default: the profile's)",
    )
    p.add_argument(
        "--chunking",
        choices=("vad", "fixed"),
        default=None,
        help="cut chunks at silences (vad, default) or every 30 s (fixed)",
    )
    p.add_argument(
        "--sequential",
        action="store_true",
        help="the reference long-form path: 30 s windows with seek, no batching",
    )
    p.add_argument("--initial-prompt", default=None, help="text to condition the first window on")
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="transcribe what a truncated file holds (with a warning saying where "
        "its data ends) instead of failing it",
    )
    p.add_argument(
        "--no-condition-on-previous-text",
        action="store_const",
        const=False,
        default=None,
        dest="condition_on_previous_text",
        help="do not feed each window's text as the next window's prompt",
    )
    p.add_argument(
        "--word-timestamps",
        action="store_true",
        help="word-level timestamps (in json; srt/vtt cues from words)",
    )
    p.add_argument(
        "--max-line-width",
        type=int,
        default=None,
        help="(with --word-timestamps) characters in a subtitle line before it breaks",
    )
    p.add_argument(
        "--max-line-count",
        type=int,
        default=None,
        help="(with --word-timestamps) lines in a subtitle cue",
    )
    p.add_argument(
        "--max-words-per-line",
        type=int,
        default=None,
        help="(with --word-timestamps, without --max-line-width) words in a line",
    )
    p.add_argument(
        "--highlight-words",
        action="store_true",
        help="(with --word-timestamps) underline each word as it is spoken in srt/vtt",
    )
    p.add_argument(
        "--language-detection",
        choices=("file", "chunk"),
        default=None,
        help="without --language on a multilingual model: one language per file "
        "(default) or per chunk",
    )
    p.add_argument(
        "--language-threshold",
        type=float,
        default=None,
        help="detections less likely than this are not trusted (default 0.5)",
    )
    p.add_argument(
        "--output-format",
        "-f",
        default=None,
        help=f"write this format ({', '.join(WRITERS)}, a plugin's, or all) to "
        "--output-dir (default: print to stdout only)",
    )
    p.add_argument(
        "--output-dir",
        "-o",
        type=Path,
        default=None,
        help="where output files go, mirroring the inputs' folders (default: current "
        "directory; -o without -f writes txt); inputs whose outputs exist are "
        "skipped",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="transcribe inputs again even when all their outputs exist",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no transcript on stdout")
    p.add_argument("--verbose", "-v", action="store_true", help="log what runs where")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default=None,
        help="hardware profile (see `runtime profiles`); default: auto-detect",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="exit with status 2 instead of falling back when the profile cannot run",
    )
    p.add_argument(
        "--emulate",
        action="store_true",
        default=None,
        help="run --profile on its stand-in where its hardware is absent (QNN HTP "
        "simulator, OpenVINO's CPU device); `runtime detect` lists them",
    )
    p.add_argument("--backend", default=None, help="force a backend, bypassing profiles")
    p.add_argument("--precision", default=None, help="override the profile's precision")


def _settings(args: argparse.Namespace):
    from runtime.config.settings import Settings

    overrides = {
        k: getattr(args, k, None)
        for k in ("model", "profile", "backend", "precision", "strict", "emulate")
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


GIVEN_OPTIONS = (
    "beam_size",
    "best_of",
    "initial_prompt",
    "condition_on_previous_text",
    "language_detection",
    "language_threshold",
)


def _overrides(args: argparse.Namespace) -> dict:
    """The transcription options given on the command line, and only those: whatever a flag
    does not say comes from the settings (TOML, RUNTIME_DECODING__*)."""
    overrides: dict = {
        name: getattr(args, name) for name in GIVEN_OPTIONS if getattr(args, name) is not None
    }
    if args.temperature is not None:
        overrides["temperature"] = args.temperature
    elif args.no_fallback:
        overrides["temperature"] = 0.0
    if args.word_timestamps:
        overrides["word_timestamps"] = True
    if args.allow_truncated:
        overrides["allow_truncated"] = True
    return overrides


def _subtitle_options(args: argparse.Namespace):
    """srt/vtt cue options; they need word timestamps (as in openai-whisper)."""
    from runtime.output.subtitles import SubtitleOptions

    given = {
        k: getattr(args, k)
        for k in ("max_line_width", "max_line_count", "max_words_per_line", "highlight_words")
    }
    used = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
    if used and not args.word_timestamps:
        raise RuntimeInputError(f"{', '.join(used)} need --word-timestamps")
    try:
        return SubtitleOptions(**given)
    except ValueError as exc:
        raise RuntimeInputError(str(exc)) from exc


def _bind_writers(writers: dict, args: argparse.Namespace) -> dict:
    """Writer classes with the subtitle options bound (plugin writers built on ``Writer`` too)."""
    from functools import partial

    from runtime.output.writers import Writer

    options = _subtitle_options(args)
    return {
        name: partial(w, options) if isinstance(w, type) and issubclass(w, Writer) else w
        for name, w in writers.items()
    }


def _progress_bar(duration: float):
    from tqdm import tqdm

    bar = tqdm(
        total=round(duration, 1),
        unit="s",
        unit_scale=False,
        leave=False,
        disable=duration < 60 or not sys.stderr.isatty(),
        desc="audio",
    )

    def update(done_seconds: float) -> None:
        bar.n = round(min(done_seconds, duration), 1)
        bar.refresh()

    return bar, update


def _transcribe_one(rt, path: str, args: argparse.Namespace, show_bar: bool = True):
    from runtime.audio.decode import audio_duration

    duration = (audio_duration(path) or 0.0) if show_bar else 0.0
    bar, update = _progress_bar(duration)
    try:
        result = rt.transcribe(
            path,
            language=args.language,
            task=args.task,
            progress=update,
            batch_size=args.batch_size,
            chunking=args.chunking,
            sequential=args.sequential,
            **_overrides(args),
        )
    finally:
        bar.close()
    return result


def _echo(args: argparse.Namespace, several: bool):
    """Print each result as it arrives: its segments (under a header when there are several)."""

    def echo(item, result) -> None:
        if not args.quiet:
            if result.language_probability is not None:  # detected, not given
                from runtime.model.tokenizer import LANGUAGES

                name = LANGUAGES.get(result.language, result.language).title()
                print(
                    f"{item.source}: detected language {name} "
                    f"({result.language}, probability {result.language_probability:.2f}); "
                    "--language sets it",
                    file=sys.stderr,
                )
            if several:
                print(f"==> {item.source} <==")
            for s in result.segments:
                print(
                    f"[{format_timestamp(s.start)} --> {format_timestamp(s.end)}] {s.text.strip()}"
                )
        if args.verbose:
            print(
                f"{item.source}: {result.duration:.1f} s of audio, language {result.language}, "
                f"{result.run.detail}, {result.timings['total']:.2f} s",
                file=sys.stderr,
            )
        sys.stdout.flush()  # each file as it completes, also into a pipe

    return echo


def _run_job(rt, args: argparse.Namespace) -> int:
    """Every input through a ``runtime.output.jobs.Job``: several together (``transcribe_many``), one
    alone or ``--sequential`` one by one; outputs that exist are skipped; a summary when files
    are written."""
    from runtime.output.jobs import (
        Job,
        collect_inputs,
        many_results,
        one_by_one_results,
        plan_outputs,
    )

    inputs, empty = collect_inputs(args.files, args.input_list)
    fmt = args.output_format or ("txt" if args.output_dir else None)
    writers = rt.plugins.writers()
    chosen = {} if not fmt else dict(writers) if fmt == "all" else {fmt: writers[fmt]}
    items = plan_outputs(
        inputs, args.output_dir or Path("."), [w.extension for w in chosen.values()]
    )
    chosen = _bind_writers(chosen, args)
    job = Job(
        items,
        chosen,
        overwrite=args.overwrite,
        echo=_echo(args, len(items) > 1),
        verbose=args.verbose,
    )

    def results(todo):
        if len(todo) == 1 or args.sequential:
            return one_by_one_results(lambda p: _transcribe_one(rt, p, args, len(todo) == 1), todo)
        return many_results(
            rt,
            todo,
            language=args.language,
            task=args.task,
            batch_size=args.batch_size,
            chunking=args.chunking,
            **_overrides(args),
        )

    summary = job.run(results, empty)
    if chosen or args.verbose or summary.interrupted:
        print(summary.render(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return EXIT_BAD_INPUT if summary.failed else 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from runtime.api import Runtime

    try:
        rt = Runtime(settings=_settings(args))
        if rt.selection and rt.selection.fallback_note:
            print(f"warning: {rt.selection.fallback_note}", file=sys.stderr)
        if rt.selection and rt.selection.emulation:
            print(f"note: {rt.selection.emulation}", file=sys.stderr)
        writers = rt.plugins.writers()
        if args.output_format and args.output_format not in (*writers, "all"):
            raise RuntimeInputError(
                f"unknown output format {args.output_format!r}; "
                f"choose from {', '.join(writers)} or all"
            )
        rt.load()  # once, up front: a bad model or backend fails before any file
        if args.verbose:
            print(
                f"profile {rt.selection.profile.name if rt.selection else '(none)'}: "
                f"{rt.session.describe()}",
                file=sys.stderr,
            )
        rt.transcribe_options(None, args.language, args.task, _overrides(args))  # bad options
        _subtitle_options(args)
        rt.batch_options(args.batch_size, args.chunking)  # fail before any file, too
        return _run_job(rt, args)
    except WhisperRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_detect(args: argparse.Namespace) -> int:
    import json

    from runtime.detect import detect, render
    from runtime.plugins import Plugins

    try:
        data = detect(_settings(args), Plugins(), load=not args.no_load)
    except WhisperRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(data, indent=1, default=str) if args.json else render(data))
    return 0 if data["chosen"].get("profile") else EXIT_BAD_INPUT


def cmd_profiles(args: argparse.Namespace) -> int:
    from runtime.config.profiles import find_profile, load_profiles
    from runtime.detect import describe_profile
    from runtime.plugins import Plugins

    try:
        plugins = Plugins()
        settings = _settings(args)
        profiles = load_profiles(plugins.profile_dirs() + list(settings.profile_dirs))
        if args.name:
            print(describe_profile(find_profile(profiles, args.name)))
            return 0
    except WhisperRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for p in sorted(profiles.values(), key=lambda p: (-p.priority, p.name)):
        print(f"{p.name:14} {p.backend:6} priority {p.priority:3}  {p.description}")
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the OpenAI-compatible transcription server")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        dest="models",
        metavar="MODEL",
        help="model to serve (repeat for several; the first answers 'whisper-1'; default: tiny.en)",
    )
    _add_selection(p)
    p.add_argument("--host", default=None, help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: 8000)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (or set RUNTIME_SERVER__API_KEY)",
    )
    p.add_argument("--max-upload-mb", type=float, default=None, help="upload limit (default: 25)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=None,
        help="requests in flight per model before 503 (default: 64)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=None,
        help="a batch forms when its oldest chunk waited this long (default: 50)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        dest="request_timeout_s",
        help="seconds before an unfinished request gets 504 (default: 600)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="chunks per batch (default: the profile's)"
    )
    p.add_argument(
        "--no-cross-request",
        action="store_false",
        default=None,
        dest="cross_request",
        help="one request at a time (the baseline for comparisons)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="log every request")


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from runtime.server import serve

    fields = (
        "host",
        "port",
        "api_key",
        "models",
        "max_upload_mb",
        "max_queue",
        "max_wait_ms",
        "request_timeout_s",
        "batch_size",
        "cross_request",
    )
    flags = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    try:
        settings = _settings(args)
        server = type(settings.server).model_validate({**settings.server.model_dump(), **flags})
    except ValidationError as exc:
        print(f"error: invalid server settings: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        serve(
            settings.model_copy(update={"server": server}),
            log_level="debug" if args.verbose else "info",
        )
    except WhisperRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before serving (loading the models): nothing to drain
        print("interrupted before the server started", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runtime", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_transcribe(sub)
    d = sub.add_parser("detect", help="show the hardware found and which profiles match")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument(
        "--no-load",
        action="store_true",
        help="do not load the chosen profile's model (skips the placement report)",
    )
    _add_selection(d)
    p = sub.add_parser("profiles", help="list hardware profiles, or show one")
    p.add_argument("name", nargs="?", help="a profile to show in full")
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "transcribe": cmd_transcribe,
        "detect": cmd_detect,
        "profiles": cmd_profiles,
        "serve": cmd_serve,
    }
    return handlers[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
