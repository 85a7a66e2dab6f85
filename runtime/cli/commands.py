"""``runtime detect``, ``runtime profiles`` and ``runtime serve``."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.transcribe import EXIT_BAD_INPUT, _settings
from runtime.errors import WhisperRuntimeError


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
