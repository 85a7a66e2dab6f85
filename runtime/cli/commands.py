"""``runtime detect``, ``runtime profiles`` and ``runtime serve``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from runtime.cli.transcribe import EXIT_BAD_INPUT, _settings
from runtime.errors import WhisperRuntimeError

if TYPE_CHECKING:
    from runtime.config.settings import Settings


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
        "max_live_sessions",
    )
    flags = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    try:
        settings = _settings(args)
        server = type(settings.server).model_validate({**settings.server.model_dump(), **flags})
    except ValidationError as exc:
        print(f"error: invalid server settings: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = settings.model_copy(update={"server": server})
    log_level = "debug" if args.verbose else "info"
    try:
        if args.ray is not None:
            _serve_on_cluster(settings, args, log_level)
        else:
            serve(settings, log_level=log_level)
    except WhisperRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before serving (loading the models): nothing to drain
        print("interrupted before the server started", file=sys.stderr)
        return 130
    return 0


def _serve_on_cluster(settings: Settings, args: argparse.Namespace, log_level: str) -> None:
    """``runtime serve --ray``: the same app as Ray Serve replicas, each with its own engines.
    Missing Ray, a bad model or a bad option fails here, in one line, before any replica."""
    from runtime.api import Runtime
    from runtime.cluster import ClusterServe, Resources, find_cluster, parse_options
    from runtime.errors import RuntimeInputError
    from runtime.model.registry import resolve_model

    rt = Runtime(settings=settings)
    cluster = find_cluster(rt.plugins.clusters(), "ray")
    options = parse_options(args.ray_option)
    replicas = args.replicas
    if replicas is not None and replicas != "auto":
        if not replicas.isdigit() or int(replicas) < 1:
            raise RuntimeInputError(f"--replicas {replicas!r}: a number of at least 1, or auto")
        replicas = int(replicas)
    for spec in settings.server.models or [settings.model]:
        resolve_model(spec, readers=rt.plugins.model_readers())
    profile = rt.selection.profile if rt.selection else None
    if profile is not None:  # every replica runs the profile chosen here
        settings = settings.model_copy(update={"profile": profile.name})
    resources = profile.resources if profile else Resources()
    cluster.serve(args.ray or None, ClusterServe(settings, resources, replicas, options), log_level)
