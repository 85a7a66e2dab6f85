"""Lifecycle: load the models and start their engines, run uvicorn, shut down gracefully.

Models are loaded before the socket opens, so a bad model name fails the command with one
line (like ``runtime transcribe``) instead of a server that answers errors. On SIGINT/SIGTERM
uvicorn stops accepting connections and waits for the requests in flight; then the lifespan
closes the engines.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0  # beyond the request timeout, for answers still being written


def _model_id(spec: str, model_name: str) -> str:
    """A short name ('tiny.en') is its own id; a folder is served under its model's name."""
    return model_name if Path(spec).expanduser().exists() or "/" in spec else spec


def load_models(settings: Settings) -> dict:
    """One Runtime and one started Engine per served model, by id (the first is the default)."""
    from runtime.api import Runtime
    from runtime.engine import Engine
    from runtime.server.state import ServedModel

    server = settings.server
    models: dict[str, ServedModel] = {}
    try:
        for spec in server.models or [settings.model]:
            runtime = Runtime(spec, settings=settings)
            runtime.session, runtime.tokenizer  # load now: a bad model fails before serving
            model_id = _model_id(spec, runtime.session.model.name)
            engine = Engine(runtime, batch_size=server.batch_size,
                            max_wait_s=server.max_wait_ms / 1000.0, max_queue=server.max_queue,
                            cross_request=server.cross_request)
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
    from runtime.server.state import ServerState

    server = settings.server
    return ServerState(models=load_models(settings),
                       max_upload_bytes=int(server.max_upload_mb * 1_000_000),
                       request_timeout_s=server.request_timeout_s,
                       api_key=server.api_key.get_secret_value() if server.api_key else None)


def uvicorn_config(app, settings: Settings, log_level: str = "info"):
    import uvicorn

    server = settings.server
    return uvicorn.Config(app, host=server.host, port=server.port, log_level=log_level,
                          lifespan="on", access_log=log_level == "debug",
                          timeout_graceful_shutdown=server.request_timeout_s + SHUTDOWN_GRACE_S)


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run the server until SIGINT/SIGTERM; the requests in flight are finished first."""
    import uvicorn

    from runtime.server.app import create_app

    state = build_state(settings)
    for model in state.models.values():
        log.warning("serving %s (%s) as %s", model.id, model.runtime.session.describe(),
                    ", ".join([model.id, *model.aliases]))
    if settings.server.host not in ("127.0.0.1", "localhost", "::1") and state.api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach it can use it",
                    settings.server.host)
    uvicorn.Server(uvicorn_config(create_app(state), settings, log_level)).run()
