"""``stream=true`` on ``/v1/audio/transcriptions``: Server-Sent Events as OpenAI sends them.

Each run of segments the engine finishes (in order, ``Engine.submit(on_segments=...)``) goes out
as a ``transcript.text.delta``; the last event is ``transcript.text.done`` with the whole text,
which equals the joined deltas and the non-streamed ``text``. An error before the first event
is a normal JSON error (the client raises its typed exception); one after it is a ``data:``
event with an ``error`` object, which the ``openai`` client raises as ``APIError``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from starlette.responses import StreamingResponse

from runtime.output.results import Segment, Transcription
from runtime.server.errors import SERVER_ERROR, APIError

Outcome = Callable[[asyncio.Future], Transcription]  # the result, or the request's APIError


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event.get('type', 'error')}\ndata: {json.dumps(event)}\n\n".encode()


class TextStream:
    """Segments from the engine's worker, turned into the deltas of one stripped text."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self.raw = ""  # every segment's text so far, joined as ``segment_text`` joins them
        self.sent = ""

    def on_segments(self, segments: list[Segment]) -> None:
        """From the engine's worker thread."""
        texts = [s.text for s in segments]
        self.loop.call_soon_threadsafe(self.queue.put_nowait, texts)

    def delta(self, texts: list[str]) -> str:
        """What the text gained: leading space is never sent, trailing space waits until more
        text follows it (so the deltas join to the stripped text)."""
        self.raw += "".join(texts)
        text = self.raw.strip()
        new, self.sent = text[len(self.sent) :], text
        return new


async def streamed(
    submit: Callable[[Callable[[list[Segment]], None]], Future],
    outcome: Outcome,
    timeout_s: float,
    cleanup: Callable[[], None],
) -> StreamingResponse:
    """Submit with a segment callback; the response once the first segments (or the end) are
    in, so errors found before then are answered as JSON."""
    stream = TextStream()
    try:
        future = asyncio.wrap_future(submit(stream.on_segments))
        future.add_done_callback(lambda _: stream.queue.put_nowait(None))
        first = await asyncio.wait_for(stream.queue.get(), timeout_s)
        if first is None:
            outcome(future)  # raises the request's error, if it failed
    except BaseException:
        cleanup()
        raise
    return StreamingResponse(
        _events(stream, first, future, outcome, timeout_s, cleanup),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _events(
    stream: TextStream,
    first: list[str] | None,
    future: asyncio.Future,
    outcome: Outcome,
    timeout_s: float,
    cleanup: Callable[[], None],
) -> AsyncIterator[bytes]:
    try:
        texts = first
        while texts is not None:
            delta = stream.delta(texts)
            if delta:
                yield sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
            texts = await _next(stream.queue.get(), timeout_s)
        try:
            result = outcome(future)
        except APIError as exc:
            yield sse(exc.body())
            return
        rest = result.text[len(stream.sent) :] if result.text.startswith(stream.sent) else ""
        if rest:  # segments the callback did not see (none expected)
            yield sse({"type": "transcript.text.delta", "delta": rest, "logprobs": None})
        yield sse(
            {
                "type": "transcript.text.done",
                "text": result.text,
                "logprobs": None,
                "usage": {"type": "duration", "seconds": round(result.duration, 3)},
            }
        )
    except asyncio.TimeoutError:
        error = APIError(504, f"the transcription did not finish within {timeout_s:g} s",
                         type=SERVER_ERROR, code="timeout")  # fmt: skip
        yield sse(error.body())
    finally:
        if not future.done():
            future.cancel()  # the client left or timed out: its rows not yet run are dropped
        cleanup()


async def _next(item: Awaitable[list[str] | None], timeout_s: float) -> list[str] | None:
    return await asyncio.wait_for(item, timeout_s)
