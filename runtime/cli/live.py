"""``runtime transcribe --live``: a live stream from standard input (raw 16 kHz mono PCM16, e.g.
``ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | runtime transcribe --live -``) or from the default
microphone (``pip install 'whisper-accel-runtime[mic]'``: sounddevice), through a
``LiveSession`` over the runtime's engine. The current partial is rewritten on one line of
stderr (when it is a terminal); each final is a line on stdout and, with ``-o FILE``, appended
to that file as it comes.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from runtime.errors import RuntimeInputError
from runtime.live import LiveOptions, LiveSession
from runtime.live import events as ev

SAMPLE_RATE = 16000
PIECE_S = 0.1


def stdin_pieces(stream: Any = None) -> Iterator[np.ndarray]:
    """100 ms pieces of raw s16le mono 16 kHz from a binary stream, until its end."""
    stream = stream if stream is not None else sys.stdin.buffer
    size, odd = int(SAMPLE_RATE * PIECE_S) * 2, b""
    while data := stream.read1(size) if hasattr(stream, "read1") else stream.read(size):
        data, odd = odd + data, b""
        if len(data) % 2:
            data, odd = data[:-1], data[-1:]
        yield np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def mic_pieces() -> Iterator[np.ndarray]:
    """100 ms pieces from the default microphone, until Ctrl-C."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise RuntimeInputError(
            f"the microphone needs sounddevice (pip install 'whisper-accel-runtime[mic]'): {exc}; "
            "or pipe raw audio in: ffmpeg -i INPUT -f s16le -ac 1 -ar 16000 - | "
            "runtime transcribe --live -"
        ) from None
    pieces: queue.Queue[np.ndarray] = queue.Queue()
    block = int(SAMPLE_RATE * PIECE_S)
    with sounddevice.InputStream(
        samplerate=SAMPLE_RATE,
        channels=1,
        dtype="float32",
        blocksize=block,
        callback=lambda data, *_: pieces.put(data[:, 0].copy()),
    ):
        while True:
            yield pieces.get()


class Printer:
    """Events to lines: partials rewrite one stderr line, finals are printed and saved."""

    def __init__(self, out: TextIO, err: TextIO, path: Path | None, quiet: bool) -> None:
        self.out, self.err, self.quiet = out, err, quiet
        self.file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self.tty = err.isatty()
        self.finals = 0

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Partial) and self.tty and not self.quiet:
            line = f"{event.stable} {event.unstable}".strip()[-150:]
            self.err.write(f"\r\033[K… {line}")
            self.err.flush()
        elif isinstance(event, ev.Completed):
            self.finals += 1
            if self.tty and not self.quiet:
                self.err.write("\r\033[K")
                self.err.flush()
            if event.transcript and not self.quiet:
                print(event.transcript, file=self.out, flush=True)
            if self.file is not None and event.transcript:
                self.file.write(event.transcript + "\n")
                self.file.flush()
        elif isinstance(event, ev.Failed):
            print(f"error: a turn failed: {event.message}", file=self.err, flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def run_live(rt: Any, args: argparse.Namespace, pieces: Iterator[np.ndarray] | None = None) -> int:
    """Transcribe one live stream until its end (or Ctrl-C); finals are flushed first."""
    from runtime.audio.vad import shared_silero

    if pieces is None:
        source = args.files[0] if args.files else None
        if source not in (None, "-"):
            raise RuntimeInputError(
                f"--live reads standard input ('-') or the microphone (no file), not {source!r}"
            )
        pieces = stdin_pieces() if source == "-" else mic_pieces()
    path = args.output_dir
    printer = Printer(sys.stdout, sys.stderr, path, args.quiet)
    engine = rt.engine()
    options = LiveOptions(language=args.language)
    session = LiveSession(engine, options, _locked(printer), vad=shared_silero())
    try:
        for piece in pieces:
            session.append(piece)
    except KeyboardInterrupt:
        pass
    finally:
        _finish(session)
        engine.close(wait=True)
        printer.close()
    return 0


def _locked(printer: Printer):
    lock = threading.Lock()

    def emit(event: ev.Event) -> None:
        with lock:
            printer(event)

    return emit


def _finish(session: LiveSession) -> None:
    """The end of the input: a second of silence closes a turn in progress, then any audio
    left is committed, and the finals still being decoded are waited for."""
    import time

    session.append(np.zeros(SAMPLE_RATE, np.float32))
    if session.speaking:
        with contextlib.suppress(ev.LiveError):  # less than 100 ms: nothing worth a turn
            session.commit()
    deadline = time.monotonic() + 120
    while session.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    session.close()
