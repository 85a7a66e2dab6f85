"""The ``runtime`` command's arguments: every flag of every subcommand, in one place."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.output.writers import WRITERS

DESCRIPTION = "Whisper speech recognition on whatever accelerator this machine has"


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
    p.add_argument(
        "--live",
        action="store_true",
        help="a live stream: '-' reads raw s16le 16 kHz mono from stdin (e.g. from ffmpeg), no "
        "file reads the microphone ([mic] extra); partials on one line, finals as lines, and "
        "appended to -o FILE as they come",
    )
    _add_selection(p)
    _add_decoding(p)
    _add_words(p)
    _add_output(p)
    _add_cluster(p, "transcribe the inputs on Ray workers")


def _add_cluster(p: argparse.ArgumentParser, what: str) -> None:
    """--ray [ADDRESS] and --ray-option: the cluster plugin's flags (``pip install '.[ray]'``)."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help=f"{what}: without ADDRESS on a new local Ray instance; 'auto' for the cluster this "
        "machine belongs to (ray start), host:6379, or ray://host:10001 (pip install '.[ray]')",
    )
    p.add_argument(
        "--ray-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Ray option (VALUE as JSON where it parses): for transcribe workers, cpus, gpus, "
        "files_per_task; for serve, any Ray Serve deployment option (README)",
    )


def _add_decoding(p: argparse.ArgumentParser) -> None:
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


def _add_words(p: argparse.ArgumentParser) -> None:
    """Word timestamps, subtitle cues cut from words, and language detection."""
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


def _add_output(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--max-live-sessions", type=int, help="Realtime sessions at once (default: 16)")
    p.add_argument("--verbose", "-v", action="store_true", help="log every request")
    _add_cluster(p, "serve as Ray Serve replicas")
    p.add_argument(
        "--replicas",
        default=None,
        help="with --ray: replicas, each with its own engine (a number, or 'auto' to autoscale; "
        "default 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runtime", description=DESCRIPTION)
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
