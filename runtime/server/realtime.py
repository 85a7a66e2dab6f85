"""OpenAI's Realtime API for transcription: ``/v1/realtime?intent=transcription``.

One WebSocket is one ``LiveSession`` over the engine of the session's model, whose turns are
rows beside the server's uploads (at live priority). Client events in: ``session.update``,
``input_audio_buffer.append`` / ``.commit`` / ``.clear``; server events out: ``session.created``
/ ``.updated``, ``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed`` /
``cleared``, ``conversation.item.added`` / ``.done``, the transcription's ``.delta`` /
``.completed`` / ``.failed`` and ``error``, shaped as the ``openai`` client parses them. A
refused event gets an ``error`` and the socket stays open; a bad key, too many sessions or the
session's time running out end it with OpenAI's close codes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from runtime.live import LiveError, LiveSession
from runtime.live import events as ev
from runtime.server.realtime_config import (
    AudioDecoder,
    RealtimeError,
    decode_append,
    default_session,
    live_options,
    merge_update,
)
from runtime.server.state import ServerState

log = logging.getLogger(__name__)

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)
CLOSE_AUTH = 3000  # OpenAI: invalid_api_key, not retried
CLOSE_REQUEST = 4000  # OpenAI: a request-shape error (missing intent, beta header)
CLOSE_EXPIRED = 1001
CLOSE_BUSY = 1013  # try again later


def error_event(message: str, code: str | None, param: str | None = None, event_id=None) -> dict:
    return {
        "type": "error",
        "event_id": ev.new_id("event"),
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def _item(event: ev.Committed) -> dict[str, Any]:
    return {
        "id": event.item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def _committed(event: ev.Committed) -> list[dict[str, Any]]:
    prev = event.previous_item_id
    return [
        {"type": "input_audio_buffer.committed", "item_id": event.item_id,
         "previous_item_id": prev},
        {"type": "conversation.item.added", "item": _item(event), "previous_item_id": prev},
        {"type": "conversation.item.done", "item": _item(event), "previous_item_id": prev},
    ]  # fmt: skip


TRANSCRIPTION = "conversation.item.input_audio_transcription"
_EVENTS: dict[type, Any] = {
    ev.SpeechStarted: lambda e: [
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": e.audio_start_ms,
         "item_id": e.item_id}
    ],
    ev.SpeechStopped: lambda e: [
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": e.audio_end_ms,
         "item_id": e.item_id}
    ],
    ev.Committed: _committed,
    ev.Cleared: lambda e: [{"type": "input_audio_buffer.cleared"}],
    ev.Delta: lambda e: [
        {"type": f"{TRANSCRIPTION}.delta", "item_id": e.item_id, "content_index": 0,
         "delta": e.delta}
    ],
    ev.Completed: lambda e: [
        {"type": f"{TRANSCRIPTION}.completed", "item_id": e.item_id, "content_index": 0,
         "transcript": e.transcript,
         "usage": {"type": "duration", "seconds": round(e.audio_seconds, 3)}}
    ],
    ev.Failed: lambda e: [
        {"type": f"{TRANSCRIPTION}.failed", "item_id": e.item_id, "content_index": 0,
         "error": {"type": "server_error", "code": None, "message": e.message}}
    ],
}  # fmt: skip


def openai_event(event: ev.Event) -> list[dict[str, Any]]:
    """A live session's event as OpenAI's server events (a ``Partial`` has none: OpenAI's
    deltas only append, and they carry the agreed words)."""
    out = _EVENTS.get(type(event), lambda e: [])(event)
    for e in out:
        e["event_id"] = ev.new_id("event")
    return out


class RealtimeConnection:
    """One socket: its session object, live session, rate limit and outgoing queue."""

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws, self.state = ws, state
        self.limits = state.live
        self.session = default_session(self.limits.max_session_s)
        self.live: LiveSession | None = None
        self.decoder = AudioDecoder(self.session["audio"]["input"]["format"])
        self.outbox: asyncio.Queue[dict | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.started = time.monotonic()
        self.audio_s = 0.0

    def send(self, event: dict) -> None:
        self.outbox.put_nowait(event)

    def _emit(self, event: ev.Event) -> None:
        """From any thread: the session's events, in order, onto the loop's queue."""
        for out in openai_event(event):
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, out)

    def _live(self) -> LiveSession:
        """The live session, made on first audio with the session's options."""
        if self.live is None:
            transcription = self.session["audio"]["input"]["transcription"] or {}
            model = self.state.resolve_realtime_model(transcription.get("model"))
            options = live_options(self.session, self.limits.options)
            vad = self.state.live_vad() if options.turn_detection is not None else None
            engine, budget = self.state.models[model].engine, self.state.partial_budgets[model]
            self.live = LiveSession(engine, options, self._emit, vad, budget=budget)
        return self.live

    # -- client events --------------------------------------------------------------------------
    def handle(self, text: str) -> None:
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RealtimeError(
                f"Invalid event: failed to parse JSON value. {exc}", "invalid_json"
            ) from None
        if not isinstance(event, dict):
            raise RealtimeError("Invalid event: expected a JSON object.", "invalid_json")
        kind = event.get("type")
        if kind == "session.update":
            self._update(event.get("session"))
        elif kind == "input_audio_buffer.append":
            self._append(event.get("audio"))
        elif kind == "input_audio_buffer.commit":
            if self.live is None:
                raise LiveError(
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    "100ms of audio, but buffer only has 0.00ms of audio.",
                    "input_audio_buffer_commit_empty",
                )
            self._live().commit()
        elif kind == "input_audio_buffer.clear":
            if self.live is not None:
                self.live.clear()
            else:
                self.send({"type": "input_audio_buffer.cleared", "event_id": ev.new_id("event")})
        else:
            raise RealtimeError(
                f"Invalid value: {kind!r}. Supported values are: {', '.join(CLIENT_EVENTS)}.",
                "invalid_value",
                "type",
            )

    def _update(self, update: Any) -> None:
        session = merge_update(self.session, update)
        transcription = session["audio"]["input"]["transcription"] or {}
        self.state.resolve_realtime_model(transcription.get("model"))  # unknown: refused
        if self.live is not None:  # new options apply from here: the turn in progress ends
            self.live.close()
            self.live = None
        if session["audio"]["input"]["format"] != self.session["audio"]["input"]["format"]:
            self.decoder = AudioDecoder(session["audio"]["input"]["format"])
        self.session = session
        self.send({"type": "session.updated", "event_id": ev.new_id("event"), "session": session})

    def _append(self, audio: Any) -> None:
        data = decode_append(audio)
        self.audio_s += self.decoder.seconds(data)
        allowed = self.limits.burst_s + self.limits.max_speed * (time.monotonic() - self.started)
        if self.audio_s > allowed:
            self.audio_s -= self.decoder.seconds(data)
            raise RealtimeError(
                f"Audio is arriving faster than {self.limits.max_speed:g}x real time "
                f"(beyond a {self.limits.burst_s:g} s burst); this piece was dropped.",
                "rate_limit_exceeded",
            )
        self._live().append(self.decoder.samples(data))

    def close(self) -> None:
        if self.live is not None:
            self.live.close()


async def realtime(ws: WebSocket) -> None:
    """The WebSocket route (see the module docstring)."""
    state: ServerState = ws.app.state.server
    await ws.accept()
    refusal = _refusal(ws, state)
    if refusal is not None:
        message, code, close = refusal
        await ws.send_text(json.dumps(error_event(message, code)))
        await ws.close(close, f"invalid_request_error.{code}"[:120])
        return
    state.live_sessions += 1
    conn = RealtimeConnection(ws, state)
    writer = asyncio.ensure_future(_write(ws, conn.outbox))
    try:
        conn.send({"type": "session.created", "event_id": ev.new_id("event"),
                   "session": conn.session})  # fmt: skip
        await asyncio.wait_for(_read(ws, conn), timeout=state.live.max_session_s)
    except asyncio.TimeoutError:
        conn.send(error_event(
            f"Your session hit the maximum duration of {state.live.max_session_s:g} seconds.",
            "session_expired",
        ))  # fmt: skip
        conn.outbox.put_nowait(None)
        await asyncio.wait_for(asyncio.shield(writer), timeout=5)
        await ws.close(CLOSE_EXPIRED, "session_expired")
    except WebSocketDisconnect:
        pass  # the client went away: its decodes in flight are cancelled below
    finally:
        conn.close()
        writer.cancel()
        state.live_sessions -= 1


def _refusal(ws: WebSocket, state: ServerState) -> tuple[str, str, int] | None:
    key = state.api_key
    if key is not None:
        scheme, _, token = ws.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), key):
            return "Incorrect or missing API key.", "invalid_api_key", CLOSE_AUTH
    if ws.query_params.get("intent") != "transcription":
        return (
            "This server offers Realtime transcription sessions only: connect with "
            "?intent=transcription.",
            "missing_model",
            CLOSE_REQUEST,
        )
    if "realtime=v1" in ws.headers.get("openai-beta", ""):
        return "The beta Realtime API shape is not supported.", "beta_api_shape_disabled", 4000
    if state.live_sessions >= state.live.max_sessions:
        return (
            f"{state.live.max_sessions} live sessions are open; retry later.",
            "too_many_sessions",
            CLOSE_BUSY,
        )
    return None


async def _read(ws: WebSocket, conn: RealtimeConnection) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            conn.send(error_event(
                "Expected a text WebSocket message; binary frames are not supported.",
                "invalid_event",
            ))  # fmt: skip
            continue
        try:
            conn.handle(text)
        except (RealtimeError, LiveError) as exc:
            client_id = _event_id(text)
            message_text = exc.message if isinstance(exc, RealtimeError) else str(exc)
            conn.send(error_event(message_text, exc.code, exc.param, client_id))
        except Exception as exc:  # noqa: BLE001 - one bad event must not end the server's loop
            log.exception("realtime: unexpected error handling an event")
            conn.send(error_event(f"internal error: {type(exc).__name__}: {exc}", "server_error"))


def _event_id(text: str) -> str | None:
    try:
        value = json.loads(text).get("event_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def _write(ws: WebSocket, outbox: asyncio.Queue[dict | None]) -> None:
    """Send the queued events in order until ``None``; a closed socket ends it quietly."""
    while (event := await outbox.get()) is not None:
        try:
            await ws.send_text(json.dumps(event))
        except (WebSocketDisconnect, RuntimeError):
            return
