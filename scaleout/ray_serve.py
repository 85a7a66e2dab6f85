"""The server as Ray Serve replicas: the local server's app, one set of engines per replica.

Each replica is one Ray actor that loads the served models and starts their engines once
(``runtime.server.serve.build_state``, as ``runtime serve`` does) and serves the same Starlette
app (``runtime.server.app.create_app``): the same routes, limits, errors, API key and
cross-request batching inside the replica. Ray Serve's proxy listens on the server's host and
port and routes each request to a replica that has room (``max_ongoing_requests``); requests
beyond that wait at the proxy. Any ``serve.deployment`` option is passed through
(``--ray-option max_ongoing_requests=8``, ``--ray-option autoscaling_config={...}``).
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
from typing import Any, cast

from ray import serve

from runtime.cluster import ClusterServe
from runtime.config.settings import Settings
from runtime.errors import RuntimeInputError
from scaleout.connect import connected

log = logging.getLogger(__name__)

APP_NAME = "whisper"
# Requests a replica takes at once (Serve's default is 5): enough to fill its engine's batches
# across requests; more wait at the proxy, which sends them to whichever replica frees first.
MAX_ONGOING_REQUESTS = 8


@serve.deployment(name="WhisperServer")
@serve.ingress()  # late-bound: the app is built in the replica, over its own engines
class WhisperServer:
    """One replica: the served models loaded once, for its whole life."""

    def __init__(self, settings: Settings) -> None:
        from runtime.server.serve import build_state

        self.state = build_state(settings)

    def __serve_build_asgi_app__(self):
        """Serve calls this after ``__init__``: the local server's app over this replica's
        state; its lifespan shutdown closes the engines when the replica stops."""
        from runtime.server.app import create_app

        return create_app(self.state)


def deployment_options(spec: ClusterServe) -> dict[str, Any]:
    """``serve.deployment`` options: replicas, each replica's resources from the profile, and
    the options given (checked against ``serve.deployment``'s own parameters)."""
    known = set(inspect.signature(serve.deployment).parameters) - {"_func_or_class", "name"}
    unknown = sorted(set(spec.options) - known)
    if unknown:
        raise RuntimeInputError(
            f"--ray-option {unknown[0]}: not a Ray Serve deployment option; "
            f"known: {', '.join(sorted(known))}"
        )
    options: dict[str, Any] = {
        "max_ongoing_requests": MAX_ONGOING_REQUESTS,
        "ray_actor_options": {"num_cpus": spec.resources.cpus, "num_gpus": spec.resources.gpus},
    }
    if spec.replicas is not None:
        options["num_replicas"] = spec.replicas
    options.update(spec.options)
    if "autoscaling_config" in spec.options and spec.replicas is None:
        options["num_replicas"] = "auto"  # Serve refuses a fixed count beside autoscaling
    return options


def start(spec: ClusterServe, log_level: str = "info") -> None:
    """Deploy the app on the connected Ray (blocks until every replica has loaded)."""
    server = spec.settings.server
    serve.start(http_options={"host": server.host, "port": server.port})
    deployment = cast(Any, WhisperServer)  # a serve.Deployment, which the decorators hide
    app = deployment.options(**deployment_options(spec)).bind(spec.settings)
    serve.run(
        app,
        name=APP_NAME,
        route_prefix="/",
        blocking=False,
        logging_config={"log_level": log_level.upper(), "enable_access_log": log_level == "debug"},
    )


def serve_app(address: str | None, spec: ClusterServe, log_level: str = "info") -> None:
    """``runtime serve --ray``: deploy, say where, wait for SIGINT/SIGTERM, remove the app (its
    replicas finish the requests in flight first, within Serve's graceful shutdown)."""
    stop = threading.Event()
    received: list[str] = []

    def on_signal(sig: int, frame: Any) -> None:
        received.append(signal.Signals(sig).name)
        stop.set()

    with connected(address):
        start(spec, log_level)
        server = spec.settings.server
        log.warning(
            "serving on Ray Serve at http://%s:%d (%s replicas)",
            server.host,
            server.port,
            spec.replicas or 1,
        )
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            serve.delete(APP_NAME)
    log.warning("stopped on %s; the requests in flight were finished", received[0])
