"""``runtime transcribe``: options from the flags given, one or many inputs, outputs and a summary.

Bad input never prints a traceback: one line names the file and the problem, the other files
are still transcribed, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.errors import RuntimeInputError, WhisperRuntimeError
from runtime.output.writers import format_timestamp

EXIT_BAD_INPUT = 2


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


def _transcribe_one(rt, path: str | Path, args: argparse.Namespace, show_bar: bool = True):
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
    """Every input through a job (``runtime.job``): several together (``transcribe_many``), one
    alone or ``--sequential`` one by one, or on Ray workers (``--ray``); outputs that exist are
    skipped; a summary when files are written."""
    from runtime.job import choose_writers, cluster_results, local_results
    from runtime.output.jobs import Job, collect_inputs, plan_outputs

    inputs, empty = collect_inputs(args.files, args.input_list)
    fmt = args.output_format or ("txt" if args.output_dir else None)
    writers = choose_writers(rt, [fmt] if fmt else [], _subtitle_options(args))
    items = plan_outputs(inputs, args.output_dir or Path("."), list(writers))
    job = Job(
        items,
        writers,
        overwrite=args.overwrite,
        echo=_echo(args, len(items) > 1),
        verbose=args.verbose,
    )
    kwargs = dict(
        language=args.language,
        task=args.task,
        batch_size=args.batch_size,
        chunking=args.chunking,
        **_overrides(args),
    )
    if args.ray is not None:
        results = cluster_results(rt, "ray", args.ray or None, kwargs, _ray_options(args))
    else:
        one = lambda p: _transcribe_one(rt, p, args, len(items) == 1)  # noqa: E731
        results = local_results(rt, kwargs, args.sequential, one)
    summary = job.run(results, empty)
    if writers or args.verbose or summary.interrupted:
        print(summary.render(), file=sys.stderr)
    if summary.interrupted:
        return 130
    return EXIT_BAD_INPUT if summary.failed else 0


def _ray_options(args: argparse.Namespace) -> dict:
    """--ray-option pairs (checked by the plugin, which knows its keys)."""
    from runtime.cluster import parse_options

    return parse_options(args.ray_option)


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
        if args.ray is not None:  # before loading: a missing Ray fails in one line, at once
            from runtime.cluster import find_cluster

            find_cluster(rt.plugins.clusters(), "ray")
            _ray_options(args)
        rt.load()  # once, up front: a bad model or backend fails before any file
        if args.live:
            from runtime.cli.live import run_live

            return run_live(rt, args)
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
