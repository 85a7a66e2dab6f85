"""Lifecycle: load the models and start their engines, run uvicorn, shut down gracefully.

Models are loaded before the socket opens, so a bad model name fails the command with one
line (like ``runtime transcribe``) instead of a server that answers errors. On SIGINT/SIGTERM
uvicorn stops accepting connections and waits for the requests in flight; then the lifespan
closes the engines, and the command says so in one line and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path

from runtime.config.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0  # beyond the request timeout, for answers still being written


def _model_id(spec: str, model_name: str) -> str:
    """A short name ('tiny.en') is its own id; a folder is served under its model's name."""
    return model_name if Path(spec).expanduser().exists() or "/" in spec else spec


def load_models(settings: Settings) -> dict:
    """One Runtime and one started Engine per served model, by id (the first is the default)."""
    from runtime.api import Runtime
    from runtime.server.state import ServedModel

    server = settings.server
    models: dict[str, ServedModel] = {}
    try:
        for spec in server.models or [settings.model]:
            runtime = Runtime(spec, settings=settings).load()  # a bad model fails before serving
            model_id = _model_id(spec, runtime.session.model.name)
            engine = runtime.engine(
                batch_size=server.batch_size,
                max_wait_s=server.max_wait_ms / 1000.0,
                max_queue=server.max_queue,
                cross_request=server.cross_request,
            )
            engine.start()
            aliases = tuple({spec, runtime.session.model.name} - {model_id})
            models[model_id] = ServedModel(model_id, runtime, engine, aliases)
    except BaseException:
        for model in models.values():
            model.engine.close(wait=False)
        raise
    return models


def build_state(settings: Settings):
    """The server's state over freshly loaded models."""
    from runtime.live import LiveOptions
    from runtime.server.state import LiveLimits, ServerState

    server = settings.server
    live = LiveLimits(
        max_sessions=server.max_live_sessions,
        max_session_s=server.live_session_max_s,
        max_speed=server.live_max_speed,
        partials_in_flight=server.live_partials_in_flight,
        options=LiveOptions(partial_interval_ms=server.live_partial_interval_ms),
    )
    return ServerState(
        live=live,
        models=load_models(settings),
        max_upload_bytes=int(server.max_upload_mb * 1_000_000),
        request_timeout_s=server.request_timeout_s,
        api_key=server.api_key.get_secret_value() if server.api_key else None,
    )


def uvicorn_config(app, settings: Settings, log_level: str = "info"):
    import uvicorn

    server = settings.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_level=log_level,
        lifespan="on",
        ws_max_size=24 * 1024 * 1024,  # one append may carry 15 MiB of audio (20 MiB as base64)
        access_log=log_level == "debug",
        # uvicorn annotates this int | None, but hands it to asyncio.timeout(): float seconds
        timeout_graceful_shutdown=server.request_timeout_s + SHUTDOWN_GRACE_S,  # type: ignore[arg-type]
    )


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run the server until SIGINT/SIGTERM; the requests in flight are finished first."""
    import uvicorn

    from runtime.server.app import create_app

    state = build_state(settings)
    for model in state.models.values():
        log.warning(
            "serving %s (%s) as %s",
            model.id,
            model.runtime.session.describe(),
            ", ".join([model.id, *model.aliases]),
        )
    if settings.server.host not in ("127.0.0.1", "localhost", "::1") and state.api_key is None:
        log.warning(
            "listening on %s without an API key: anyone who can reach it can use it",
            settings.server.host,
        )
    server = uvicorn.Server(uvicorn_config(create_app(state), settings, log_level))
    with _stop_signals() as received:
        server.run()
    if received:
        how = (
            "forced: the requests in flight were dropped"
            if server.force_exit
            else "the requests in flight were finished"
        )
        log.warning("stopped on %s; %s", received[0].name, how)


@contextlib.contextmanager
def _stop_signals():
    """The signals that stopped the server, recorded instead of re-raised.

    uvicorn handles SIGINT/SIGTERM itself (a graceful drain) and, once shut down, raises the
    signal again for the handler that was there before it: Python's default turns SIGINT into
    a KeyboardInterrupt traceback (status 130) and SIGTERM into death by signal. Here the
    handler before it is this one, so a clean stop ends ``serve`` normally (status 0)."""
    if threading.current_thread() is not threading.main_thread():
        yield []  # uvicorn installs no handlers outside the main thread either
        return
    received: list[signal.Signals] = []
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda sig, frame: received.append(signal.Signals(sig)))
        for sig in handled
    }
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
