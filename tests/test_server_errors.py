"""`runtime serve` under bad input and pressure: 40 malformed requests each get a 4xx JSON
error while good requests run beside them; the queue limit (503 + Retry-After), the request
timeout (504), client disconnects (the engine drops the request), graceful shutdown, and no
temporary file left behind."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EVAL_DIR, eval_file
from tests.fuzz_audio import encode, speech, wav_bytes
from tests.liveserver import LiveServer, get_json, multipart, post_form, request, write_wav

KEY = "errors-key-9c1"
LIMIT_MB = 2
TRANSCRIBE = "/v1/audio/transcriptions"
JFK_WORDS = "ask not what your country can do for you"
LONGFORM = ("longform", "librispeech-19-198_northanger-abbey-ch01.flac")  # 505 s, 9.5 MB


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tmp_dir):
    eval_file("jfk.flac")
    srv = LiveServer(
        "--api-key",
        KEY,
        "--max-upload-mb",
        str(LIMIT_MB),
        log_path=tmp_path_factory.mktemp("log") / "server.log",
        env={"TMPDIR": str(tmp_dir)},
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def jfk() -> bytes:
    return eval_file("jfk.flac").read_bytes()


# -- the malformed requests --------------------------------------------------------------------
Case = Callable[[bytes], dict]  # jfk bytes -> keywords of liveserver.request (less the URL)


def form(
    *parts: tuple[str, bytes | str, str | None],
    key: str | None = KEY,
    path: str = TRANSCRIBE,
    **extra,
) -> dict:
    body, content_type = multipart(list(parts))
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    return dict(method="POST", path=path, body=body, headers=headers, **extra)


def raw(
    body: bytes,
    content_type: str,
    key: str | None = KEY,
    method: str = "POST",
    path: str = TRANSCRIBE,
) -> dict:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    return dict(method=method, path=path, body=body, headers=headers)


def audio(data: bytes, name: str = "a.flac") -> tuple[str, bytes, str]:
    return ("file", data, name)


M = ("model", "whisper-1", None)
RNG = np.random.default_rng(0)
NOISE = RNG.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
OVERSIZED = RNG.integers(0, 256, (LIMIT_MB + 1) * 1_000_000, dtype=np.uint8).tobytes()


def _wav_without_frames() -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    return buf.getvalue()


def _half_an_ogg() -> bytes:
    data = encode(speech(), 48000, "ogg", "libopus")
    return data[: len(data) // 2]


def _nan_wav() -> bytes:
    x = speech().copy()
    x[50000:51000] = np.nan
    return wav_bytes(x, tag=3, bits=32)


def _truncated_multipart(jfk: bytes) -> dict:
    case = form(audio(jfk), M)
    case["body"] = case["body"][: len(case["body"]) // 2]
    return case


MALFORMED: dict[str, tuple[int, Case]] = {
    "no file": (400, lambda j: form(M)),
    "empty file": (400, lambda j: form(audio(b""), M)),
    "text file": (400, lambda j: form(audio(b"this is not audio\n" * 50, "a.wav"), M)),
    "random bytes": (400, lambda j: form(audio(NOISE, "noise.mp3"), M)),
    "truncated flac": (400, lambda j: form(audio(j[: len(j) // 3]), M)),
    "png image": (400, lambda j: form(audio(b"\x89PNG\r\n\x1a\n" + bytes(5000), "a.png"), M)),
    "wav without frames": (400, lambda j: form(audio(_wav_without_frames(), "a.wav"), M)),
    "wav with an unknown format tag": (
        400,
        lambda j: form(audio(wav_bytes(speech(), header={"tag": 0x1234}), "tag.wav"), M),
    ),  # was a 500
    "wav header claiming 7 bits": (
        400,
        lambda j: form(audio(wav_bytes(speech(), header={"bits": 7}), "bits7.wav"), M),
    ),  # was an empty 200
    "float wav with NaN samples": (400, lambda j: form(audio(_nan_wav(), "nan.wav"), M)),
    "truncated ogg": (400, lambda j: form(audio(_half_an_ogg(), "cut.ogg"), M)),  # was a short 200
    "allow_truncated not a boolean": (
        400,
        lambda j: form(audio(j), M, ("allow_truncated", "maybe", None)),
    ),
    "no model": (400, lambda j: form(audio(j))),
    "empty model": (400, lambda j: form(audio(j), ("model", "", None))),
    "unknown model": (404, lambda j: form(audio(j), ("model", "whisper-9", None))),
    "unknown response_format": (400, lambda j: form(audio(j), M, ("response_format", "xml", None))),
    "numeric response_format": (400, lambda j: form(audio(j), M, ("response_format", "5", None))),
    "temperature not a number": (400, lambda j: form(audio(j), M, ("temperature", "hot", None))),
    "negative temperature": (400, lambda j: form(audio(j), M, ("temperature", "-0.5", None))),
    "temperature above 1": (400, lambda j: form(audio(j), M, ("temperature", "1.5", None))),
    "temperature nan": (400, lambda j: form(audio(j), M, ("temperature", "nan", None))),
    "unknown language": (400, lambda j: form(audio(j), M, ("language", "klingon", None))),
    "numeric language": (400, lambda j: form(audio(j), M, ("language", "123", None))),
    "german on tiny.en": (400, lambda j: form(audio(j), M, ("language", "de", None))),
    "unknown granularity": (
        400,
        lambda j: form(
            audio(j),
            M,
            ("response_format", "verbose_json", None),
            ("timestamp_granularities[]", "char", None),
        ),
    ),
    "word granularity with json": (
        400,
        lambda j: form(audio(j), M, ("timestamp_granularities[]", "word", None)),
    ),
    "model given twice": (400, lambda j: form(audio(j), M, ("model", "tiny.en", None))),
    "two files": (400, lambda j: form(audio(j), audio(j), M)),
    "file under another name": (400, lambda j: form(("audio", j, "a.flac"), M)),
    "model sent as a file": (400, lambda j: form(audio(j), ("model", "whisper-1", "m.txt"))),
    "stream not a boolean": (400, lambda j: form(audio(j), M, ("stream", "maybe", None))),
    "json body": (
        400,
        lambda j: raw(json.dumps({"model": "whisper-1"}).encode(), "application/json"),
    ),
    "urlencoded body": (
        400,
        lambda j: raw(b"model=whisper-1", "application/x-www-form-urlencoded"),
    ),
    "no boundary": (400, lambda j: raw(form(audio(j), M)["body"], "multipart/form-data")),
    "truncated multipart": (400, _truncated_multipart),
    "garbage multipart": (
        400,
        lambda j: raw(b"not a multipart body at all" * 10, "multipart/form-data; boundary=xyz"),
    ),
    "part without a name": (
        400,
        lambda j: raw(
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ),
    "prompt over 64 KiB": (400, lambda j: form(audio(j), M, ("prompt", "word " * 20000, None))),
    "too many fields": (
        400,
        lambda j: form(audio(j), M, *[(f"x{i}", "1", None) for i in range(40)]),
    ),
    "oversized (Content-Length)": (413, lambda j: form(audio(OVERSIZED), M)),
    "oversized (chunked)": (413, lambda j: form(audio(OVERSIZED), M, chunked=True)),
    "GET on transcriptions": (405, lambda j: raw(b"", "text/plain", method="GET")),
    "unknown path": (404, lambda j: form(audio(j), M, path="/v1/audio/speech")),
    "no API key": (401, lambda j: form(audio(j), M, key=None)),
    "wrong API key": (401, lambda j: form(audio(j), M, key="guess")),
    "translation on tiny.en": (400, lambda j: form(audio(j), M, path="/v1/audio/translations")),
}


def send(server: LiveServer, case: dict) -> tuple[int, dict[str, str], bytes]:
    case = dict(case)
    return request(case.pop("method"), server.url + case.pop("path"), **case)


def assert_openai_error(status: int, body: bytes, expected: int, name: str) -> dict:
    assert status == expected, (name, status, body[:300])
    error = json.loads(body)["error"]
    assert isinstance(error["message"], str) and error["message"], name
    assert error["type"] in ("invalid_request_error", "server_error"), name
    assert set(error) == {"message", "type", "param", "code"}, name
    return error


def test_enough_malformed_cases():
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_a_json_error(server, jfk, name):
    expected, build = MALFORMED[name]
    status, _, body = send(server, build(jfk))
    assert_openai_error(status, body, expected, name)


def test_params_name_the_bad_field(server, jfk):
    for name, param in (
        ("temperature above 1", "temperature"),
        ("unknown language", "language"),
        ("unknown response_format", "response_format"),
        ("no file", "file"),
        ("unknown model", "model"),
        ("text file", "file"),
    ):
        expected, build = MALFORMED[name]
        status, _, body = send(server, build(jfk))
        assert assert_openai_error(status, body, expected, name)["param"] == param, name
    status, _, body = send(server, MALFORMED["text file"][1](jfk))
    message = json.loads(body)["error"]["message"]
    assert "'a.wav'" in message and "runtime-serve-" not in message  # the client's name only


def test_truncated_upload_is_refused_unless_allowed(server):
    cut = audio(_half_an_ogg(), "cut.ogg")
    status, _, body = post_form(server.url + TRANSCRIBE, [cut, M], api_key=KEY)
    error = assert_openai_error(status, body, 400, "truncated ogg")
    assert error["code"] == "invalid_audio" and error["param"] == "file"
    assert error["message"].startswith("uploaded file 'cut.ogg': truncated: ")
    assert "the data ends at 5.0 s" in error["message"]
    assert (
        "send the form field allow_truncated=true to transcribe its first 5.0 s" in error["message"]
    )
    status, _, body = post_form(
        server.url + TRANSCRIBE, [cut, M, ("allow_truncated", "true", None)], api_key=KEY
    )
    assert status == 200, body[:300]
    assert json.loads(body)["text"].lower().startswith("and so my fellow americans")


def test_loud_float_upload_is_scaled_not_hallucinated(server):
    loud = audio(wav_bytes(speech() * 1e6, tag=3, bits=32), "loud.wav")
    status, _, body = post_form(server.url + TRANSCRIBE, [loud, M], api_key=KEY)
    assert status == 200 and JFK_WORDS in json.loads(body)["text"].lower(), body[:300]
    assert "float samples peak at" in server.log()  # said in the server's log


def test_malformed_storm_beside_good_requests(server, jfk, tmp_dir):
    """Every malformed request at once, twice over, while good requests run concurrently."""
    good_results: list[tuple[int, bytes]] = []

    def good() -> None:
        for _ in range(3):
            status, _, body = post_form(server.url + TRANSCRIBE, [audio(jfk), M], api_key=KEY)
            good_results.append((status, body))

    def bad(name: str) -> tuple[str, int, bytes]:
        expected, build = MALFORMED[name]
        status, _, body = send(server, build(jfk))
        return name, status, body

    workers = [threading.Thread(target=good) for _ in range(3)]
    for w in workers:
        w.start()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(bad, list(MALFORMED) * 2))
    for w in workers:
        w.join()
    for name, status, body in answers:
        assert_openai_error(status, body, MALFORMED[name][0], name)
    assert len(good_results) == 9
    for status, body in good_results:
        assert status == 200 and JFK_WORDS in json.loads(body)["text"].lower(), body[:300]
    assert get_json(server.url + "/health")["status"] == "ok"
    stats = get_json(server.url + "/stats", KEY)["http"]
    assert stats["errors_5xx"] == 0 and stats["errors_4xx"] >= 2 * len(MALFORMED)
    assert stats["in_flight"] == 1  # this /stats request itself
    assert not list(tmp_dir.glob("runtime-serve-*")), "temporary uploads left behind"


# -- queue limit, timeout, disconnect, shutdown -----------------------------------------------
@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """One request at a time, a 3 s timeout: a long file occupies it."""
    eval_file(*LONGFORM)
    srv = LiveServer(
        "--max-queue",
        "1",
        "--request-timeout",
        "3",
        "--max-upload-mb",
        "12",
        log_path=tmp_path_factory.mktemp("busy") / "server.log",
    )
    yield srv
    srv.stop()


def _engine(server: LiveServer) -> dict:
    return get_json(server.url + "/stats")["models"]["tiny.en"]["engine"]


def _wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_queue_full_is_503_and_timeout_is_504(busy_server, jfk):
    long = (EVAL_DIR / LONGFORM[0] / LONGFORM[1]).read_bytes()
    first: list = []
    worker = threading.Thread(
        target=lambda: first.append(post_form(busy_server.url + TRANSCRIBE, [audio(long), M]))
    )
    worker.start()
    _wait_for(lambda: _engine(busy_server)["requests_in_flight"] == 1)
    status, headers, body = post_form(busy_server.url + TRANSCRIBE, [audio(jfk), M])
    error = assert_openai_error(status, body, 503, "queue full")
    assert error["code"] == "queue_full" and int(headers["retry-after"]) >= 1
    worker.join(30)
    status, _, body = first[0]
    assert assert_openai_error(status, body, 504, "timeout")["code"] == "timeout"
    _wait_for(lambda: _engine(busy_server)["requests_in_flight"] == 0)  # its rows were dropped
    status, _, body = post_form(busy_server.url + TRANSCRIBE, [audio(jfk), M])
    assert status == 200 and JFK_WORDS in json.loads(body)["text"].lower()
    http = get_json(busy_server.url + "/stats")["http"]
    assert http["queue_full"] >= 1 and http["timeouts"] >= 1


def test_client_disconnect_cancels_the_request(busy_server, jfk):
    long = (EVAL_DIR / LONGFORM[0] / LONGFORM[1]).read_bytes()
    body, content_type = multipart([audio(long), M])
    before = get_json(busy_server.url + "/stats")
    sock = socket.create_connection(("127.0.0.1", busy_server.port))
    sock.sendall(
        f"POST {TRANSCRIBE} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    _wait_for(lambda: _engine(busy_server)["requests_in_flight"] == 1)
    sock.close()  # well before the 3 s timeout
    _wait_for(
        lambda: (
            get_json(busy_server.url + "/stats")["http"]["disconnects"]
            == before["http"]["disconnects"] + 1
        ),
        timeout=5,
    )
    _wait_for(lambda: _engine(busy_server)["requests_in_flight"] == 0, timeout=5)
    assert _engine(busy_server)["cancelled"] > before["models"]["tiny.en"]["engine"]["cancelled"]
    status, _, answer = post_form(busy_server.url + TRANSCRIBE, [audio(jfk), M])
    assert status == 200, answer


def test_graceful_shutdown_finishes_the_request_in_flight(tmp_path):
    from runtime.audio.decode import load_audio

    files = sorted((EVAL_DIR / "librispeech").glob("*.flac"))[:8]
    if not files:
        pytest.skip(f"evaluation audio absent from {EVAL_DIR}")
    speech = write_wav(tmp_path / "speech.wav", np.concatenate([load_audio(f) for f in files]))
    srv = LiveServer(log_path=tmp_path / "server.log")
    answer: list = []
    worker = threading.Thread(
        target=lambda: answer.append(
            post_form(srv.url + TRANSCRIBE, [audio(speech.read_bytes(), "speech.wav"), M])
        )
    )
    worker.start()
    _wait_for(lambda: _engine(srv)["requests_in_flight"] == 1)
    srv.proc.send_signal(signal.SIGTERM)
    worker.join(60)
    status, _, body = answer[0]
    assert status == 200 and len(json.loads(body)["text"].split()) > 50, body[:300]
    assert srv.stop() == 0
    assert "Application shutdown complete" in srv.log()
    assert (
        srv.log()
        .splitlines()[-1]
        .endswith("stopped on SIGTERM; the requests in flight were finished")
    )
    with pytest.raises(OSError):
        request("GET", srv.url + "/health", timeout=2)


def test_sigint_stops_the_server_with_one_line_and_status_0(tmp_path):
    """Was a KeyboardInterrupt traceback and status 130 after a drain that had finished."""
    srv = LiveServer(log_path=tmp_path / "server.log")
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(60) == 0
    srv.stop()
    log = srv.log()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert log.splitlines()[-1].endswith("stopped on SIGINT; the requests in flight were finished")
