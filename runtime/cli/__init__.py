"""The ``runtime`` command: ``transcribe``, ``detect``, ``profiles`` and ``serve``.

Bad input never prints a traceback: one line names the file and the problem, the other files
are still transcribed, and the exit status is 2.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runtime.cli.arguments import build_parser
from runtime.cli.commands import cmd_detect, cmd_profiles, cmd_serve
from runtime.cli.transcribe import EXIT_BAD_INPUT, cmd_transcribe

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]


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
