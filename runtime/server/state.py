"""What one server holds: the served models (a Runtime and its Engine each), the limits, and
HTTP-level counters for ``GET /stats``."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.live import PartialBudget
from runtime.live.options import LiveOptions
from runtime.server.errors import APIError

if TYPE_CHECKING:
    from runtime.api import Runtime
    from runtime.audio.silero import SileroVad
    from runtime.pipeline.engine import Engine

log = logging.getLogger(__name__)

OPENAI_ALIAS = "whisper-1"  # what OpenAI's clients send; answered by the first served model
LATENCY_WINDOW = 1000  # latest successful requests kept for the percentiles in /stats


@dataclass
class ServedModel:
    id: str  # the name clients use, e.g. "tiny.en"
    runtime: Runtime
    engine: Engine
    aliases: tuple[str, ...] = ()
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class HttpCounters:
    """Counted by the server itself (the engine counts batches, audio and its own errors)."""

    requests: int = 0
    in_flight: int = 0
    by_status: collections.Counter = field(default_factory=collections.Counter)
    queue_full: int = 0
    timeouts: int = 0
    disconnects: int = 0
    upload_bytes: int = 0
    latencies: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW)
    )

    def record_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def snapshot(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies, dtype=float)
        p50, p95 = np.percentile(lat, [50, 95]).tolist() if lat.size else (None, None)
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "errors_4xx": sum(v for k, v in self.by_status.items() if 400 <= k < 500),
            "errors_5xx": sum(v for k, v in self.by_status.items() if k >= 500),
            "queue_full": self.queue_full,
            "timeouts": self.timeouts,
            "disconnects": self.disconnects,
            "upload_bytes": self.upload_bytes,
            "latency_p50_s": p50,
            "latency_p95_s": p95,
        }


@dataclass(frozen=True)
class LiveLimits:
    """Realtime sessions: how many at once, how long each, how much faster than real time a
    client may send audio (beyond a burst), and the live transcriber's options."""

    max_sessions: int = 16
    max_session_s: float = 3600.0  # OpenAI's 60 minutes
    max_speed: float = 4.0
    burst_s: float = 30.0
    partials_in_flight: int = 1  # per model, across its sessions (``PartialBudget``)
    options: LiveOptions = field(default_factory=LiveOptions)


@dataclass
class ServerState:
    models: dict[str, ServedModel]  # by id; the first is the default ("whisper-1")
    max_upload_bytes: int
    request_timeout_s: float
    api_key: str | None = None
    retry_after_s: int = 1
    counters: HttpCounters = field(default_factory=HttpCounters)
    started: float = field(default_factory=time.time)
    live: LiveLimits = field(default_factory=LiveLimits)
    live_sessions: int = 0  # Realtime WebSockets open

    def __post_init__(self) -> None:
        self.partial_budgets = {m: PartialBudget(self.live.partials_in_flight) for m in self.models}
        if not self.models:
            raise ValueError("a server needs at least one model")
        default = next(iter(self.models))
        self.aliases = {OPENAI_ALIAS: default}
        for model in self.models.values():
            self.aliases.update({alias: model.id for alias in (model.id, *model.aliases)})

    def resolve_model(self, name: str) -> str:
        """The served model's id for a client's model name; 404 in OpenAI's words otherwise."""
        if name in self.aliases:
            return self.aliases[name]
        raise APIError(
            404,
            f"The model {name!r} does not exist on this server; it serves "
            f"{', '.join(self.model_names())}",
            param="model",
            code="model_not_found",
        )

    def resolve_realtime_model(self, name: str | None) -> str:
        """A Realtime session's model: a served one by name, else the default (clients send
        OpenAI's names, gpt-4o-transcribe and the like, which are labels here)."""
        return self.aliases.get(name or "", next(iter(self.models)))

    def live_vad(self) -> SileroVad:
        from runtime.audio.vad import shared_silero

        return shared_silero()

    def model_names(self) -> list[str]:
        return [OPENAI_ALIAS, *self.models]

    def model_cards(self) -> list[dict[str, Any]]:
        """OpenAI's model objects: whisper-1 (the default model) and every served model."""
        default = next(iter(self.models.values()))
        cards = [
            {
                "id": OPENAI_ALIAS,
                "object": "model",
                "created": default.created,
                "owned_by": "whisper-accel-runtime",
                "root": default.id,
            }
        ]
        return cards + [
            {
                "id": m.id,
                "object": "model",
                "created": m.created,
                "owned_by": "whisper-accel-runtime",
                "root": m.id,
            }
            for m in self.models.values()
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "uptime_s": time.time() - self.started,
            "http": self.counters.snapshot(),
            "live_sessions": self.live_sessions,
            "models": {
                m.id: {"engine": m.engine.stats(), "backend": m.runtime.backend_name}
                for m in self.models.values()
            },
        }

    def close(self) -> None:
        """Finish the requests in flight, then stop every engine's worker."""
        for model in self.models.values():
            try:
                model.engine.close(wait=True)
            except Exception:  # one engine failing to close must not keep the others open
                log.exception("closing the engine of %s failed", model.id)
