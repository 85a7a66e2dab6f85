"""The fuzzing suite's HTTP half: uploads of every audio case, malformed multipart bodies,
broken HTTP framing, slow and vanishing clients and a flood past ``--max-queue``, each answer
checked against the properties of ``tests/fuzz_checks.py``: 200 with the text the case allows,
or a 4xx in OpenAI's JSON shape (503 with Retry-After, 504), never another 5xx, a traceback in
the server's log, a hang or a temporary file left behind.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.fuzz_audio import SPEECH, Case
from tests.fuzz_checks import Tally, check_expectation, python_error
from tests.liveserver import LiveServer, get_json, multipart

TRANSCRIBE = "/v1/audio/transcriptions"
ERROR_KEYS = {"message", "type", "param", "code"}
APP_STATUSES = {200, 400, 401, 404, 405, 413, 503, 504}


@dataclass(frozen=True)
class RawRequest:
    """Bytes to send on a fresh connection; ``framing`` when they break HTTP itself (then
    uvicorn's own plain-text 400, or a closed connection, is a right answer too)."""

    name: str
    data: bytes
    framing: bool = False
    close_after_s: float | None = None  # the client gives up and closes (sent too little)


def form(parts, boundary: str = "fuzz-boundary-41c7") -> tuple[bytes, str]:
    return multipart(parts, boundary)


def http_bytes(
    body: bytes, content_type: str, headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    lines = [
        f"POST {TRANSCRIBE} HTTP/1.1",
        "Host: fuzz",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


def read_answer(sock: socket.socket, timeout_s: float) -> tuple[int | None, dict, bytes]:
    """(status, headers, body) of the answer on ``sock``; status None when it was closed."""
    sock.settimeout(timeout_s)
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    except (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionError):
        return None, {}, b""


def send_raw(
    server: LiveServer, raw: RawRequest, timeout_s: float = 120
) -> tuple[int | None, dict, bytes]:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        # the server may refuse early (413 on the declared length) and close
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw.data)
        if raw.close_after_s is not None:
            time.sleep(raw.close_after_s)
            return None, {}, b""
        return read_answer(sock, timeout_s)


def check_http_answer(
    tally: Tally, name: str, status: int | None, headers: dict, body: bytes, framing: bool = False
) -> dict | None:
    """Status and body shape; the error object when the app answered one."""
    what = f"{name!r}: {status} {body[:160]!r}"
    if status is None:
        tally.check("http: an answer, unless HTTP framing was broken", framing, what)
        return None
    tally.check(
        "http: never a 5xx but 503 and 504",
        status in APP_STATUSES or (framing and 400 <= status < 500),
        what,
    )
    if status == 200:
        return None
    if framing and "json" not in headers.get("content-type", ""):
        return None  # uvicorn's own answer to bytes that are not HTTP
    try:
        error = json.loads(body)["error"]
        shaped = set(error) == ERROR_KEYS and isinstance(error["message"], str) and error["message"]
    except (ValueError, KeyError, TypeError):
        error, shaped = None, False
    tally.check("http: errors are OpenAI's JSON shape", bool(shaped), what)
    if status == 503:
        tally.check("http: 503 says Retry-After", headers.get("retry-after", "").isdigit(), what)
    return error if shaped else None


# -- uploads of the audio cases ----------------------------------------------------------------
def upload(server: LiveServer, case: Case, fields=(), timeout_s: float = 120):
    body, content_type = form(
        [("file", case.data, case.filename), ("model", "whisper-1", None), *fields]
    )
    raw = RawRequest(case.name, http_bytes(body, content_type))
    return send_raw(server, raw, timeout_s)


def check_upload(
    tally: Tally,
    server: LiveServer,
    case: Case,
    limit_bytes: int,
    timeout_s: float = 120,
    retries: int = 30,
) -> None:
    """Upload ``case`` (again after Retry-After while the queue is full, as a client would)."""
    tally.add(case)
    for _ in range(retries):
        tally.add(requests=1)
        t0 = time.monotonic()
        try:
            status, headers, body = upload(server, case, timeout_s=timeout_s)
        except TimeoutError:
            tally.check("no hang: every request is answered in time", False, case.name)
            return
        tally.check(
            "no hang: every request is answered in time",
            time.monotonic() - t0 < timeout_s,
            case.name,
        )
        error = check_http_answer(tally, case.name, status, headers, body)
        if status != 503:
            break
        time.sleep(min(float(headers.get("retry-after", 1)), 2.0))
    if status == 200:
        check_expectation(tally, "http", case, json.loads(body)["text"], None)
    elif error is not None and status == 400:
        message = error["message"]
        if error["code"] == "invalid_audio":
            tally.check(
                "http: an audio error names the uploaded file, not the server's",
                message.startswith("uploaded file ") and "runtime-serve-" not in message,
                message,
            )
        check_expectation(tally, "http", case, None, message)
    else:  # 503 after every retry: still the documented answer to a full queue
        tally.check(
            "http: an upload is answered 200, 400, 413 (over the limit) or 503",
            status == 503 or (status == 413 and len(case.data) > limit_bytes),
            f"{case.name!r}: {status}",
        )


# -- malformed bodies and broken framing -------------------------------------------------------
def malformed_requests(rng: np.random.Generator, audio: bytes, count: int) -> list[RawRequest]:
    """Named mutations of a valid upload, then ``count`` random ones."""
    body, ctype = form([("file", audio, "a.flac"), ("model", "whisper-1", None)])
    b = "fuzz-boundary-41c7"
    fixed = [
        RawRequest(
            "no closing boundary", http_bytes(body[: body.rindex(b"--" + b.encode())], ctype)
        ),
        RawRequest(
            "boundary not the declared one", http_bytes(body, "multipart/form-data; boundary=other")
        ),
        RawRequest("empty boundary", http_bytes(body, "multipart/form-data; boundary=")),
        RawRequest("LF instead of CRLF", http_bytes(body.replace(b"\r\n", b"\n"), ctype)),
        RawRequest(
            "two file parts",
            http_bytes(
                *form(
                    [
                        ("file", audio, "a.flac"),
                        ("file", audio, "b.flac"),
                        ("model", "whisper-1", None),
                    ]
                )
            ),
        ),
        RawRequest(
            "NUL and invalid UTF-8 in the model",
            http_bytes(
                *form([("file", audio, "a.flac"), ("model", b"whis\x00per-\xff\xfe1", None)])
            ),
        ),
        RawRequest(
            "100 KB part header",
            http_bytes(
                body.replace(
                    b"Content-Type: application/octet-stream", b"X-Pad: " + b"x" * 100_000, 1
                ),
                ctype,
            ),
        ),
        RawRequest(
            "base64 transfer encoding",
            http_bytes(
                body.replace(
                    b"Content-Type: application/octet-stream",
                    b"Content-Transfer-Encoding: base64",
                    1,
                ),
                ctype,
            ),
        ),
        RawRequest(
            "quote in the file name",
            http_bytes(
                *form([("file", audio, 'a.flac"; name="model'), ("model", "whisper-1", None)])
            ),
        ),
        RawRequest(
            "newline in the file name",
            http_bytes(
                *form([("file", audio, "a\r\nX-Evil: 1\r\n.flac"), ("model", "whisper-1", None)])
            ),
        ),
        RawRequest(
            "nested multipart/mixed",
            http_bytes(
                body.replace(
                    b"Content-Type: application/octet-stream",
                    b"Content-Type: multipart/mixed; boundary=in",
                    1,
                ),
                ctype,
            ),
        ),
        RawRequest(
            "Content-Length over the body (client gives up)",
            http_bytes(body, ctype, length=len(body) + 5000),
            close_after_s=1.0,
        ),
        RawRequest("Content-Length under the body", http_bytes(body, ctype, length=len(body) // 2)),
        RawRequest(
            "Content-Length not a number",
            http_bytes(body, ctype, {"Content-Length": "many"}),
            framing=True,
        ),
        RawRequest(
            "Content-Length and chunked",
            http_bytes(body, ctype, {"Transfer-Encoding": "chunked"}),
            framing=True,
        ),
        RawRequest(
            "bad chunk size",
            (
                f"POST {TRANSCRIBE} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                "Transfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n0\r\n\r\n"
            ).encode(),
            framing=True,
        ),
        RawRequest(
            "not HTTP at all",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(300),
            framing=True,
        ),
        RawRequest("request line only", b"POST / HTTP/1.1\r\n\r\n", framing=True),
        RawRequest(
            "64 KB header line",
            f"POST {TRANSCRIBE} HTTP/1.1\r\nX: {'y' * 65536}\r\n\r\n".encode(),
            framing=True,
        ),
        RawRequest(
            "headers, then silence (client gives up)",
            http_bytes(b"", ctype, length=len(body)),
            close_after_s=1.0,
        ),
    ]
    randoms = []
    for k in range(count):
        data = bytearray(body)
        kind = ["cut", "flip", "junk", "drop"][k % 4]
        i = int(rng.integers(0, len(data)))
        if kind == "cut":
            data = data[:i]
        elif kind == "flip":
            for j in rng.integers(0, min(len(data), 400), int(rng.integers(1, 12))):
                data[j] ^= 1 << int(rng.integers(8))
        elif kind == "junk":
            data[i:i] = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
        else:
            del data[i : i + int(rng.integers(1, 3000))]
        randoms.append(RawRequest(f"multipart {kind} {k}", http_bytes(bytes(data), ctype)))
    return fixed + randoms


def check_malformed(tally: Tally, server: LiveServer, raw: RawRequest) -> None:
    tally.add(requests=1)
    try:
        status, headers, body = send_raw(server, raw, timeout_s=60)
    except TimeoutError:
        tally.check("no hang: every request is answered in time", False, raw.name)
        return
    if raw.close_after_s is None:
        check_http_answer(tally, raw.name, status, headers, body, raw.framing)


# -- clients that are slow or go away ----------------------------------------------------------
def check_clients(tally: Tally, server: LiveServer, audio: bytes, long_audio: bytes) -> None:
    """A slow uploader and a slow reader get their text; clients that vanish mid-upload,
    before the body or while waiting are let go (their work cancelled)."""
    speech = Case("slow client", audio, "a.flac", SPEECH)
    body, ctype = form([("file", audio, "a.flac"), ("model", "whisper-1", None)])
    request = http_bytes(body, ctype)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # 2 KB every 10 ms
        for i in range(0, len(request), 2048):
            sock.sendall(request[i : i + 2048])
            time.sleep(0.01)
        status, headers, answer = read_answer(sock, 120)
    tally.add(requests=1)
    if check_http_answer(tally, "slow uploader", status, headers, answer) is None and status == 200:
        check_expectation(tally, "http", speech, json.loads(answer)["text"], None)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        time.sleep(3.0)  # reads the answer late
        status, headers, answer = read_answer(sock, 120)
    tally.add(requests=1)
    if check_http_answer(tally, "slow reader", status, headers, answer) is None and status == 200:
        check_expectation(tally, "http", speech, json.loads(answer)["text"], None)
    long_body, long_type = form([("file", long_audio, "long.wav"), ("model", "whisper-1", None)])
    before = get_json(server.url + "/stats")["http"]["disconnects"]
    vanishing = [
        http_bytes(body, ctype)[: len(request) // 3],  # mid-upload
        http_bytes(b"", ctype, length=len(body)),  # headers, no body
        http_bytes(long_body, long_type),
    ]  # whole upload, gone while it is transcribed
    for data in vanishing:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(data)
            time.sleep(0.5)
        tally.add(requests=1)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and get_json(server.url + "/stats")["http"]["disconnects"] < before + 3
    ):
        time.sleep(0.2)
    tally.check(
        "http: vanished clients are let go",
        get_json(server.url + "/stats")["http"]["disconnects"] >= before + 3,
        "disconnects not counted",
    )


def check_flood(tally: Tally, server: LiveServer, case: Case, clients: int) -> None:
    """``clients`` uploads at once against a small --max-queue: 200 with the text or 503 with
    Retry-After, none lost."""
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda _: upload(server, case), range(clients)))
    for status, headers, body in answers:
        tally.add(requests=1)
        check_http_answer(tally, "flood", status, headers, body)
        tally.check("http: a flood gets 200 or 503", status in (200, 503), str(status))
        if status == 200:
            check_expectation(tally, "http", case, json.loads(body)["text"], None)


def check_server_after(tally: Tally, server: LiveServer, tmp_dir: Path) -> None:
    """Still healthy, no 5xx counted, no temporary upload left, no traceback logged."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and get_json(server.url + "/stats")["http"]["in_flight"] > 1:
        time.sleep(0.2)
    stats = get_json(server.url + "/stats")["http"]
    tally.check(
        "http: the server stays healthy", get_json(server.url + "/health")["status"] == "ok", ""
    )
    tally.check(
        "http: no 5xx but 503 and 504 counted",
        stats.get("errors_5xx", 0)
        == stats.get("by_status", {}).get("503", 0) + stats.get("by_status", {}).get("504", 0),
        json.dumps(stats),
    )
    left = list(tmp_dir.glob("runtime-serve-*"))
    tally.check("http: no temporary upload left", not left, str(left))
    for line in server.log().splitlines():
        tally.check(
            "http: no traceback or Python warning in the server's log",
            python_error(line) is None,
            line[:200],
        )
