"""A real `runtime serve` in a subprocess on a free localhost port, and a raw HTTP client.

The raw client (http.client and sockets) sends what the openai client never would: truncated
bodies, wrong content types, duplicated fields, chunked uploads.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

STARTUP_TIMEOUT_S = 180  # a first start exports the ONNX graphs of the model


def _default_sigint() -> None:
    """The server gets SIGINT's default disposition (Python's KeyboardInterrupt), as from a
    terminal, even when the tests run where SIGINT is ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``python -m runtime.cli serve ARGS`` on 127.0.0.1, waited for until /health answers."""

    def __init__(self, *args: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "runtime.cli", "serve", "--port", str(self.port), *args]
        self._log = open(log_path, "wb")  # noqa: SIM115 - the server writes it until stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=_default_sigint,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if request("GET", self.url + "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {STARTUP_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (uvicorn's graceful shutdown), then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def multipart(
    parts: list[tuple[str, bytes | str, str | None]], boundary: str = "test-boundary-7MA4YWxk"
) -> tuple[bytes, str]:
    """(body, content type) for parts of (name, value, filename or None)."""
    out = bytearray()
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + (value.encode() if isinstance(value, str) else value) + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
    chunked: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; (status, headers, body). ``chunked`` streams the body in 64 KiB pieces."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(.*)", url).groups()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if chunked:
            pieces = (body[i : i + 65536] for i in range(0, len(body or b""), 65536))
            conn.request(
                method, path or "/", body=pieces, headers=headers or {}, encode_chunked=True
            )
        else:
            conn.request(method, path or "/", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def post_form(
    url: str, parts: list[tuple[str, bytes | str, str | None]], api_key: str | None = None, **kwargs
) -> tuple[int, dict[str, str], bytes]:
    body, content_type = multipart(parts)
    headers = {"Content-Type": content_type}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return request("POST", url, body, headers, **kwargs)


def get_json(url: str, api_key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    status, _, body = request("GET", url, headers=headers, timeout=10)
    assert status == 200, body
    return json.loads(body)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """16-bit mono WAV of float samples in [-1, 1]."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path
