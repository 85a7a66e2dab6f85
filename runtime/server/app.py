"""The ASGI app: OpenAI's audio endpoints over one ``Engine`` per served model.

A request streams its upload to a temporary file, is validated, and is submitted to the
model's engine, whose scheduler batches its chunks with those of every other request in
flight. The handler then waits for the first of: the result, the request timeout (504), or
the client going away (the future is cancelled, so its rows that have not run are dropped).
The temporary file is removed in every case.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from runtime.errors import AudioError, RuntimeInputError, TruncatedAudioError
from runtime.output.results import Segment, Transcription
from runtime.pipeline.engine import QueueFullError
from runtime.server.errors import (
    SERVER_ERROR,
    APIError,
    api_error_handler,
    bad_request,
    http_exception_handler,
)
from runtime.server.middleware import AuthMiddleware, CountingMiddleware
from runtime.server.realtime import realtime
from runtime.server.request import AudioRequest, parse_audio_request
from runtime.server.responses import render
from runtime.server.state import ServerState
from runtime.server.streaming import streamed
from runtime.server.upload import FILE_FIELD, Upload, read_upload

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's status for "the client went away before the answer"


async def transcriptions(request: Request) -> Response:
    return await _audio(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _audio(request, "translate")


async def _audio(request: Request, task: str) -> Response:
    state: ServerState = request.app.state.server
    upload: Upload | None = None
    try:
        upload = await read_upload(request, state.max_upload_bytes)
        state.counters.upload_bytes += upload.size
        audio_request = parse_audio_request(upload, task, state.resolve_model)
        if audio_request.stream:  # the upload is removed when the stream ends
            path, name, remove, upload = upload.path, upload.filename or "", upload.remove, None
            assert path is not None  # parse_audio_request refused a form without a file
            return await streamed(
                lambda on_segments: _submit(state, path, audio_request, on_segments),
                lambda future: _outcome(state, future, path, name),
                state.request_timeout_s,
                remove,
            )
        result = await _transcribe(request, state, upload, audio_request)
        return render(result, audio_request)
    except ClientDisconnect:
        state.counters.disconnects += 1
        return Response(status_code=CLIENT_CLOSED)
    finally:
        if upload is not None:
            upload.remove()


def _submit(
    state: ServerState,
    path: Path,
    request: AudioRequest,
    on_segments: Callable[[list[Segment]], None] | None = None,
) -> Future:
    engine = state.models[request.model].engine
    try:
        return engine.submit(
            str(path),
            language=request.language,
            task=request.task,
            on_segments=on_segments,
            priority=request.priority,
            **request.engine_overrides(),
        )
    except QueueFullError as exc:
        state.counters.queue_full += 1
        raise APIError(
            503,
            f"the server is busy: {exc}; retry shortly",
            type=SERVER_ERROR,
            code="queue_full",
            headers={"Retry-After": str(state.retry_after_s)},
        ) from exc
    except RuntimeInputError as exc:
        raise bad_request(str(exc)) from exc


async def _transcribe(
    request: Request, state: ServerState, upload: Upload, audio_request: AudioRequest
) -> Transcription:
    t0 = time.perf_counter()
    assert upload.path is not None  # parse_audio_request refused a form without a file
    future = asyncio.wrap_future(_submit(state, upload.path, audio_request))
    disconnected = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {future, disconnected},
            timeout=state.request_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        disconnected.cancel()
        if not future.done():
            future.cancel()  # cancels the engine's future: its rows not yet run are dropped
    if disconnected in done and future not in done:
        raise ClientDisconnect()
    if future not in done:
        state.counters.timeouts += 1
        raise APIError(
            504,
            f"the transcription did not finish within {state.request_timeout_s:g} s",
            type=SERVER_ERROR,
            code="timeout",
        )
    result = _outcome(state, future, upload.path, upload.filename or "")
    state.counters.record_latency(time.perf_counter() - t0)
    return result


def _outcome(
    state: ServerState, future: asyncio.Future, path: Path, filename: str
) -> Transcription:
    """The finished request's transcription, or its error as the client should see it."""
    if future.cancelled():
        raise APIError(
            503,
            "the request was cancelled: the server is shutting down",
            type=SERVER_ERROR,
            code="shutting_down",
            headers={"Retry-After": str(state.retry_after_s)},
        )
    exc = future.exception()
    if isinstance(exc, AudioError):  # name the client's file, not the server's temporary one
        message = (
            exc.message("send the form field allow_truncated=true")
            if isinstance(exc, TruncatedAudioError)
            else str(exc)
        )
        message = message.replace(str(path), f"uploaded file {filename!r}")
        raise bad_request(message, param=FILE_FIELD, code="invalid_audio") from exc
    if isinstance(exc, RuntimeInputError):
        raise bad_request(str(exc)) from exc
    if exc is not None:
        raise exc
    return future.result()


async def _wait_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def list_models(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    return JSONResponse({"object": "list", "data": state.model_cards()})


async def get_model(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    name = request.path_params["model"]
    cards = {card["id"]: card for card in state.model_cards()}
    if name not in cards:
        state.resolve_model(name)  # raises the 404
    return JSONResponse(cards[name])


async def health(request: Request) -> JSONResponse:
    """200 while every model's engine worker runs; 503 (with the dead ones) otherwise."""
    state: ServerState = request.app.state.server
    dead = [name for name, model in state.models.items() if not model.engine.alive]
    if dead:
        return JSONResponse({"status": "engine worker stopped", "models": dead}, status_code=503)
    return JSONResponse({"status": "ok", "models": list(state.models)})


async def stats(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.server
    return JSONResponse(state.stats())


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: logged with its traceback, answered as JSON, server stays up."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return APIError(
        500, f"internal server error: {type(exc).__name__}: {exc}", type=SERVER_ERROR
    ).response()


def create_app(state: ServerState) -> Starlette:
    """The app over ready engines; closing the app (lifespan shutdown) closes the engines after
    uvicorn has let the requests in flight finish."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await asyncio.to_thread(state.close)

    routes = [
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", translations, methods=["POST"]),
        WebSocketRoute("/v1/realtime", realtime),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
    ]
    middleware = [
        Middleware(CountingMiddleware, counters=state.counters),
        Middleware(AuthMiddleware, api_key=state.api_key),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_exception_handler,
            APIError: api_error_handler,
            Exception: internal_error,
        },
    )
    app.state.server = state
    return app
