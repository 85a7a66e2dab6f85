"""Live transcription on `runtime serve`: OpenAI's Realtime WebSocket and ``stream=true``
uploads, through the official `openai` client (and a raw WebSocket for what it never sends)."""

from __future__ import annotations

import base64
import json
import re
import signal
import time

import numpy as np
import pytest

from runtime.audio.decode import load_audio
from tests.conftest import eval_file
from tests.liveserver import LiveServer, get_json

openai = pytest.importorskip("openai", reason="the openai client is in the test extra")
ws_sync = pytest.importorskip("websockets.sync.client", reason="websockets (openai[realtime])")

API_KEY = "live-key-2c9e"
JFK_WORDS = "ask not what your country can do for you"
PIECE = 2400  # 100 ms at 24 kHz


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    eval_file("jfk.flac")
    srv = LiveServer(
        "--model",
        "tiny.en",
        "--api-key",
        API_KEY,
        "--max-live-sessions",
        "3",
        log_path=tmp_path_factory.mktemp("server") / "server.log",
    )
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM), srv.log()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(api_key=API_KEY, base_url=server.url + "/v1", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def jfk_pcm24() -> bytes:
    audio = load_audio(str(eval_file("jfk.flac")), sample_rate=24000)
    return (np.clip(audio, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def _session(turn_detection) -> dict:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": turn_detection,
            }
        },
    }


def _send_pcm(conn, pcm: bytes) -> None:
    for i in range(0, len(pcm), 2 * PIECE):
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 2 * PIECE]).decode())


def _until(conn, kind: str, count: int = 1, timeout_s: float = 60) -> list:
    """Every event until the ``count``-th of ``kind``."""
    seen, found, deadline = [], 0, time.monotonic() + timeout_s
    for event in conn:
        seen.append(event)
        found += event.type == kind
        assert event.type != "error", event
        if found == count or time.monotonic() > deadline:
            break
    return seen


def test_realtime_manual_commit_jfk(client, jfk_pcm24):
    """The issue's check: 24 kHz PCM16 in 100 ms pieces, a commit, the JFK sentence back."""
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session=_session(None))
        _send_pcm(conn, jfk_pcm24)
        conn.input_audio_buffer.commit()
        events = _until(conn, "conversation.item.input_audio_transcription.completed")
    kinds = [e.type for e in events]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert "input_audio_buffer.committed" in kinds
    completed = events[-1]
    assert JFK_WORDS in _normalize(completed.transcript)
    assert completed.usage.type == "duration" and completed.usage.seconds > 10
    committed = next(e for e in events if e.type == "input_audio_buffer.committed")
    assert committed.item_id == completed.item_id


def test_realtime_server_vad_turns(client, jfk_pcm24):
    """Server VAD cuts JFK at its pauses: speech_started/stopped per turn, finals in order."""
    silence = bytes(2 * 24000)  # 1 s, so the last turn's silence is seen
    with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(
            session=_session(
                {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                }  # fmt: skip
            )
        )
        _send_pcm(conn, jfk_pcm24 + silence)
        events = _until(conn, "input_audio_buffer.speech_stopped", count=1)
        conn.input_audio_buffer.commit()  # whatever is still open (or an error if nothing)
        rest = []
        for event in conn:
            rest.append(event)
            finals = [e for e in events + rest if e.type.endswith("transcription.completed")]
            stopped = [e for e in events + rest if e.type == "input_audio_buffer.committed"]
            if stopped and len(finals) == len(stopped):
                break
    events += rest
    started = [e for e in events if e.type == "input_audio_buffer.speech_started"]
    assert started and all(e.audio_start_ms >= 0 for e in started)
    text = _normalize(" ".join(e.transcript for e in finals))
    assert "ask what you can do for your country" in text
    committed = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    assert [e.item_id for e in finals] == committed  # finals come in turn order


def test_stream_true_deltas_equal_text(client):
    """``stream=True``: deltas join to the non-streamed text, then ``transcript.text.done``."""
    path = eval_file("jfk.flac")
    with open(path, "rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    with open(path, "rb") as f:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert len(events) >= 2 and events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]) == plain.text == events[-1].text


def test_stream_true_long_file_streams_segments(client):
    """A longer upload streams several deltas (segment by segment)."""
    path = eval_file("librispeech", "1089-134686-0001.flac")
    audio = load_audio(str(path))
    with open(path, "rb") as f:
        events = list(client.audio.transcriptions.create(model="tiny.en", file=f, stream=True))
    assert events[-1].type == "transcript.text.done" and len(audio) > 0
    assert "".join(e.delta for e in events[:-1]) == events[-1].text


def _raw(server, query="?intent=transcription", key=API_KEY):
    url = server.url.replace("http", "ws") + "/v1/realtime" + query
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return ws_sync.connect(url, additional_headers=headers, open_timeout=10)


def _next(ws) -> dict:
    return json.loads(ws.recv(timeout=10))


def test_realtime_bad_input_errors_and_socket_stays(server):
    with _raw(server) as ws:
        assert _next(ws)["type"] == "session.created"
        for frame, code in [
            ("{not json", "invalid_json"),
            ('{"type": "bogus.event"}', "invalid_value"),
            (b"\x00\x01", "invalid_event"),
            ('{"type":"input_audio_buffer.append","audio":"***"}', "invalid_value"),
            ('{"type":"session.update","session":{"type":"transcription","audio":{"input":'
             '{"format":{"type":"audio/pcm","rate":16000}}}}}', "integer_below_min_value"),
            ('{"type":"session.update","session":{"bogus":1}}', "unknown_parameter"),
            ('{"type":"input_audio_buffer.commit","event_id":"c1"}',
             "input_audio_buffer_commit_empty"),
        ]:  # fmt: skip
            ws.send(frame)
            event = _next(ws)
            assert event["type"] == "error" and event["error"]["code"] == code, (frame, event)
        assert event["error"]["event_id"] == "c1"
        ws.send(json.dumps({"type": "session.update", "session": _session(None)}))
        assert _next(ws)["type"] == "session.updated"  # still serving
        second = base64.b64encode(bytes(2 * 24000)).decode()
        for _ in range(35):  # 35 s of audio at once: beyond the 30 s burst at 4x real time
            ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": second}))
        event = _next(ws)
        assert event["type"] == "error" and event["error"]["code"] == "rate_limit_exceeded"


def test_realtime_refusals_close(server):
    for query, key, close in [("?intent=transcription", "wrong", 3000), ("", API_KEY, 4000)]:
        with _raw(server, query, key) as ws:
            event = _next(ws)
            assert event["type"] == "error"
            with pytest.raises(ws_sync.ConnectionClosed if hasattr(ws_sync, "ConnectionClosed")
                               else Exception):  # fmt: skip
                ws.recv(timeout=10)
            assert ws.close_code == close


def test_realtime_vanishing_client_leaves_nothing(server, jfk_pcm24):
    """Clients that vanish mid-turn (no close frame handshake awaited) free their sessions."""
    for _ in range(4):  # more than --max-live-sessions: each must have been freed
        with _raw(server) as ws:
            _next(ws)
            for i in range(0, 20 * 2 * PIECE, 2 * PIECE):
                chunk = base64.b64encode(jfk_pcm24[i : i + 2 * PIECE]).decode()
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            ws.socket.close()  # gone, without a close frame
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = get_json(server.url + "/stats", API_KEY)
        if stats["live_sessions"] == 0:
            break
        time.sleep(0.2)
    assert stats["live_sessions"] == 0
    assert get_json(server.url + "/health")["status"] == "ok"
