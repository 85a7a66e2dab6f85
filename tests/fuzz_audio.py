"""Hostile and odd audio inputs, generated from a seed: the fuzzing suite's audio half.

Every ``Case`` is what a user could hand the runtime (the bytes of a file and its name, or an
array) and what may come of it: ``SPEECH`` (a transcript of the JFK clip), ``EMPTY`` (an empty
success: silence, noise), ``ERROR`` (one ``AudioError`` line, holding ``error`` when given) or
``ANY`` (a success or one error line: a damaged file may still decode). Never a traceback,
another exception, NaN samples, a hang or a leaked file. ``tests/test_fuzz.py`` runs a quick,
fixed-seed part in CI; ``tools/fuzz.py`` runs thousands by hand.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
import soxr

from tests.conftest import EVAL_DIR

SPEECH, EMPTY, ERROR, ANY = "speech", "empty", "error", "any"
JFK_TEXT = (
    "and so my fellow americans ask not what your country can do for you ask what you "
    "can do for your country"
)
RATE = 16000


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes | np.ndarray | object = field(repr=False)  # arrays and other API values
    filename: str = "input.wav"
    expect: str = ANY
    error: str | None = None  # a phrase an ERROR case's message holds
    family: str = ""

    @property
    def is_array(self) -> bool:
        """Passed to the Python API as it is, not as a file."""
        return not isinstance(self.data, bytes)


@functools.lru_cache(maxsize=1)
def speech() -> np.ndarray:
    """The JFK clip at 16 kHz mono float32 (11 s); FileNotFoundError without ../shared/eval."""
    from runtime.audio.decode import load_audio

    path = EVAL_DIR / "jfk.flac"
    if not path.exists():
        raise FileNotFoundError(f"{path} is absent (../shared/eval beside the repo)")
    samples = load_audio(path)
    samples.flags.writeable = False
    return samples


def recall(text: str, reference: str = JFK_TEXT) -> float:
    """The share of the reference's words found in ``text`` (case and punctuation ignored)."""
    words = re.findall(r"[a-z']+", text.lower())
    wanted = reference.split()
    return sum(1 for w in set(wanted) if w in words) / len(set(wanted))


def is_speech(text: str) -> bool:
    return recall(text) >= 0.7


# -- encoders ----------------------------------------------------------------------------------
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def encode(samples: np.ndarray, rate: int, fmt: str, codec: str, channels: int = 1) -> bytes:
    """``samples`` (16 kHz float mono) as ``codec`` at ``rate`` in container ``fmt``, with PyAV."""
    x = samples if rate == RATE else soxr.resample(samples, RATE, rate).astype(np.float32)
    x = np.ascontiguousarray(np.repeat(x[:, None], channels, axis=1)).reshape(1, -1)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = LAYOUTS[channels]
        frame = av.AudioFrame.from_ndarray(x.astype(np.float32), format="flt", layout=stream.layout)
        frame.sample_rate = rate
        context = stream.codec_context
        resampler = av.AudioResampler(
            format=context.format,
            layout=stream.layout,
            rate=rate,
            frame_size=context.frame_size or 1024,
        )
        for piece in [*resampler.resample(frame), *resampler.resample(None), None]:
            for packet in stream.encode(piece):
                container.mux(packet)
    return buffer.getvalue()


_PCM = {(1, 8): "u1", (1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}


def wav_bytes(
    samples: np.ndarray,
    rate: int = RATE,
    *,
    tag: int = 1,
    bits: int = 16,
    channels: int = 1,
    header: dict | None = None,
    data: bytes | None = None,
) -> bytes:
    """A WAV of ``samples`` (float, (n,) or (n, channels)), written by hand so that ``header``
    can lie: any of channels, rate, byte_rate, block_align, bits, tag, data_size, riff_size."""
    if data is None:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        kind = _PCM[(tag, bits)]
        if kind == "u1":
            data = np.clip(x * 128 + 128, 0, 255).astype(np.uint8).tobytes()
        elif kind[1] == "i":
            full = 2.0 ** (bits - 1)
            data = np.clip(x * full, -full, full - 1).astype(kind).tobytes()
        else:
            data = x.astype(kind).tobytes()
    h = dict(
        tag=tag,
        channels=channels,
        rate=rate,
        bits=bits,
        block_align=channels * bits // 8,
        data_size=len(data),
    )
    h.update(header or {})
    h.setdefault("byte_rate", h["rate"] * h["block_align"])
    fmt = struct.pack(
        "<HHIIHH",
        h["tag"],
        h["channels"],
        h["rate"] & 0xFFFFFFFF,
        h["byte_rate"] & 0xFFFFFFFF,
        h["block_align"] & 0xFFFF,
        h["bits"] & 0xFFFF,
    )
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", h["data_size"] & 0xFFFFFFFF)
        + data
    )
    return b"RIFF" + struct.pack("<I", h.get("riff_size", len(body)) & 0xFFFFFFFF) + body


# (container, codec, rate, file suffix, what the JFK clip in it must give)
FORMATS = [
    ("wav", "pcm_s16le", 16000, "wav", SPEECH),
    ("wav", "pcm_u8", 8000, "wav", SPEECH),
    ("wav", "pcm_s24le", 48000, "wav", SPEECH),
    ("wav", "pcm_f32le", 16000, "wav", SPEECH),
    ("wav", "pcm_f64le", 22050, "wav", SPEECH),
    ("wav", "pcm_alaw", 8000, "wav", SPEECH),
    ("wav", "pcm_mulaw", 8000, "wav", SPEECH),
    ("wav", "adpcm_ima_wav", 16000, "wav", SPEECH),
    ("wav", "adpcm_ms", 11025, "wav", SPEECH),
    ("w64", "pcm_s16le", 16000, "w64", SPEECH),
    ("aiff", "pcm_s16be", 22050, "aiff", SPEECH),
    ("caf", "pcm_s16le", 16000, "caf", SPEECH),
    ("au", "pcm_s16be", 16000, "au", SPEECH),
    ("flac", "flac", 44100, "flac", SPEECH),
    ("ogg", "libopus", 48000, "ogg", SPEECH),
    ("opus", "libopus", 48000, "opus", SPEECH),
    ("webm", "libopus", 48000, "webm", SPEECH),
    ("matroska", "pcm_f32le", 16000, "mkv", SPEECH),
    ("mp3", "libmp3lame", 44100, "mp3", SPEECH),
    ("mp3", "mp3", 22050, "mp3", SPEECH),
    ("ipod", "aac", 44100, "m4a", SPEECH),
    ("ipod", "alac", 44100, "m4a", SPEECH),
    ("mp4", "aac", 48000, "mp4", SPEECH),
    ("mov", "pcm_s16le", 16000, "mov", SPEECH),
    ("3gp", "libopencore_amrnb", 8000, "3gp", ANY),
    ("amr", "libopencore_amrnb", 8000, "amr", ANY),
    ("adts", "aac", 16000, "aac", SPEECH),
    ("ac3", "ac3", 48000, "ac3", SPEECH),
    ("eac3", "eac3", 48000, "eac3", SPEECH),
    ("avi", "pcm_s16le", 16000, "avi", SPEECH),
    ("avi", "libmp3lame", 44100, "avi", SPEECH),
    ("mpegts", "mp2", 48000, "ts", SPEECH),
    ("mpegts", "aac", 48000, "ts", SPEECH),
    ("nut", "pcm_s16le", 16000, "nut", SPEECH),
    ("flv", "libmp3lame", 44100, "flv", SPEECH),
    ("wv", "wavpack", 16000, "wv", SPEECH),
    ("tta", "tta", 16000, "tta", SPEECH),
    ("voc", "pcm_u8", 8000, "voc", SPEECH),
    ("sox", "pcm_s32le", 16000, "sox", SPEECH),
    ("ircam", "pcm_s16le", 16000, "sf", SPEECH),
    ("rm", "real_144", 8000, "rm", ANY),
    ("wsaud", "adpcm_ima_ws", 16000, "aud", ANY),
    ("latm", "aac", 48000, "latm", SPEECH),
    ("smjpeg", "pcm_s16le", 16000, "mjpg", SPEECH),
]
# containers whose header states the length: cut in half, each must be a TruncatedAudioError
DECLARES_LENGTH = (
    "wav",
    "w64",
    "aiff",
    "caf",
    "au",
    "flac",
    "ogg",
    "opus",
    "webm",
    "matroska",
    "mp3",
    "wv",
    "tta",
    "flv",
    "smjpeg",
)


@functools.cache
def encoded(fmt: str, codec: str, rate: int, channels: int = 1) -> bytes:
    return encode(speech(), rate, fmt, codec, channels)


def format_cases(formats=FORMATS) -> list[Case]:
    """The JFK clip in every container and codec PyAV writes here."""
    return [
        Case(
            f"jfk as {fmt}/{codec} {rate} Hz",
            encoded(fmt, codec, rate),
            f"jfk.{suffix}",
            expect,
            family="formats",
        )
        for fmt, codec, rate, suffix, expect in formats
    ]


def truncation_cases() -> list[Case]:
    """Each container that declares its length, cut in half: the same error everywhere."""
    return [
        Case(
            f"half a {fmt}/{codec}",
            data[: len(data) // 2],
            f"cut.{suffix}",
            ERROR,
            "the data ends at",
            family="truncated",
        )
        for fmt, codec, rate, suffix, _ in FORMATS
        if fmt in DECLARES_LENGTH
        for data in [encoded(fmt, codec, rate)]
    ]


# -- signals: silence, noise, values, rates, channels, lengths ---------------------------------
def signal_cases(rng: np.random.Generator, long: bool = False) -> list[Case]:
    jfk = speech()
    noise = rng.standard_normal(RATE * 5)
    cases = [
        Case("silence 5 s", wav_bytes(np.zeros(RATE * 5)), "silence.wav", EMPTY),
        Case("white noise -20 dBFS", wav_bytes(0.1 * noise), "noise.wav", EMPTY),
        Case("white noise clipped", wav_bytes(np.clip(noise, -1, 1)), "loud.wav", EMPTY),
        Case(
            "brown noise",
            wav_bytes(np.cumsum(noise) / np.abs(np.cumsum(noise)).max()),
            "brown.wav",
            EMPTY,
        ),
        Case("DC offset", wav_bytes(np.full(RATE * 3, 0.5)), "dc.wav", EMPTY),
        Case(
            "full-scale square",
            wav_bytes(np.sign(np.sin(np.arange(RATE * 3) / 10))),
            "square.wav",
            ANY,
        ),
        Case(
            "clicks",
            wav_bytes(np.where(np.arange(RATE * 4) % 4000 == 0, 0.9, 0.0)),
            "clicks.wav",
            EMPTY,
        ),
        Case(
            "NaN samples",
            wav_bytes(np.where(np.arange(len(jfk)) == 50000, np.nan, jfk), tag=3, bits=32),
            "nan.wav",
            ERROR,
            "NaN or infinite",
        ),
        Case(
            "all NaN",
            wav_bytes(np.full(RATE, np.nan), tag=3, bits=32),
            "allnan.wav",
            ERROR,
            "NaN or infinite",
        ),
        Case(
            "+inf samples",
            wav_bytes(np.where(np.arange(len(jfk)) % 9000 == 1, np.inf, jfk), tag=3, bits=64),
            "inf.wav",
            ERROR,
            "NaN or infinite",
        ),
        Case("speech x 1e6 float", wav_bytes(jfk * 1e6, tag=3, bits=32), "loud.wav", SPEECH),
        Case("speech x 32768 float64", wav_bytes(jfk * 32768, tag=3, bits=64), "int16.wav", SPEECH),
        Case("speech x 1e-6 float", wav_bytes(jfk * 1e-6, tag=3, bits=32), "quiet.wav", ANY),
        Case("denormal floats", wav_bytes(np.full(RATE, 1e-40), tag=3, bits=32), "tiny.wav", EMPTY),
        Case("speech as 8-bit", wav_bytes(jfk, bits=8), "u8.wav", SPEECH),
        Case(
            "speech stereo opposite phase",
            wav_bytes(np.stack([jfk, -jfk], 1), channels=2),
            "phase.wav",
            EMPTY,
        ),
        Case(
            "speech in one of 8 channels",
            wav_bytes(np.pad(jfk[:, None], ((0, 0), (3, 4))), channels=8),
            "8ch.wav",
            SPEECH,
        ),
        Case(
            "64 channels of noise",
            wav_bytes(0.01 * rng.standard_normal(1600 * 64), channels=64),
            "64ch.wav",
            EMPTY,
        ),
    ]
    for n in (0, 1, 159, 160, 400, 1600, RATE * 30 + 1):
        cases.append(
            Case(
                f"{n} samples of noise",
                wav_bytes(0.05 * rng.standard_normal(n)),
                f"len{n}.wav",
                ERROR if n == 0 else EMPTY,
                "0 samples" if n == 0 else None,
            )
        )
    for rate in (4000, 96000, 192000, 384000):  # the clip resampled: still speech
        cases.append(
            Case(
                f"speech at {rate} Hz",
                wav_bytes(soxr.resample(jfk, RATE, rate), rate),
                f"rate{rate}.wav",
                SPEECH,
            )
        )
    for rate, expect in ((1, ERROR), (999, ERROR), (2**31 - 1, ANY)):  # 10 samples of noise
        cases.append(
            Case(
                f"noise at {rate} Hz",
                wav_bytes(0.05 * rng.standard_normal(10), rate),
                f"rate{rate}.wav",
                expect,
            )
        )
    for minutes in (10,) if not long else (10, 60, 180):
        silence = encode(np.zeros(RATE * 60 * minutes, np.float32), RATE, "flac", "flac")
        cases.append(Case(f"{minutes} min of digital silence", silence, "long.flac", EMPTY))
    for c in cases:
        object.__setattr__(c, "family", c.family or "signals")
    return cases


def array_cases(rng: np.random.Generator) -> list[Case]:
    """What the Python API takes besides files: arrays of every shape and type."""
    jfk = speech()
    arrays = {
        "float32 speech": (jfk, SPEECH),
        "float64 speech": (jfk.astype(np.float64), SPEECH),
        "int16 speech": ((jfk * 32767).astype(np.int16), SPEECH),
        "int16 values as floats": (jfk * 32767, SPEECH),
        "float16 speech": (jfk.astype(np.float16), SPEECH),
        "int32 speech": ((jfk * 2**31).astype(np.int32), SPEECH),
        "uint8 speech": ((jfk * 127 + 128).astype(np.uint8), SPEECH),
        "stereo (2, n)": (np.stack([jfk, jfk]), SPEECH),
        "stereo (n, 2)": (np.stack([jfk, jfk], 1), SPEECH),
        "reversed view": (jfk[::-1][::-1], SPEECH),
        "Fortran order": (np.asfortranarray(np.stack([jfk, jfk])), SPEECH),
        "array of zeros": (np.zeros(RATE * 3, np.float32), EMPTY),
        "one sample": (np.zeros(1, np.float32), EMPTY),
        "noise": (rng.uniform(-1, 1, RATE * 3).astype(np.float32), EMPTY),
        "empty": (np.zeros(0, np.float32), ERROR),
        "NaN": (np.full(100, np.nan, np.float32), ERROR),
        "inf": (np.array([0.0, np.inf]), ERROR),
        "9 x 9": (np.zeros((9, 9), np.float32), ERROR),
        "3-D": (np.zeros((2, 3, 4), np.float32), ERROR),
        "complex": (np.zeros(100, np.complex64), ERROR),
        "bool": (np.ones(100, bool), ERROR),
        "object": (np.array([0.1, "x"], dtype=object), ERROR),
        "0-D": (np.array(0.5), ERROR),
        "numpy scalar": (np.float32(0.5), ERROR),
        "list of floats": ([0.0, 0.1], ERROR),
    }
    return [
        Case(name, data, "<array>", expect, family="arrays")
        for name, (data, expect) in arrays.items()
    ]


# -- lies in headers ---------------------------------------------------------------------------
def lying_headers(rng: np.random.Generator) -> list[Case]:
    """Headers that contradict themselves or the data, for every container with a length or
    format field we can find, plus random bytes over each container's first 64 bytes."""
    jfk = speech()
    wav_lies = {
        "7 bits per sample": ({"bits": 7}, ERROR),
        "0 bits": ({"bits": 0}, ERROR),
        "0 channels": ({"channels": 0}, ERROR),
        "9 channels in 2-byte frames": ({"channels": 9}, ERROR),
        "0 Hz": ({"rate": 0}, ERROR),
        "rate 8000 with 16000's byte rate": ({"rate": 8000, "byte_rate": 32000}, ERROR),
        "block align 3": ({"block_align": 3}, ERROR),
        "format tag 0x1234": ({"tag": 0x1234}, ERROR),
        "format tag 0": ({"tag": 0}, ERROR),
        "float tag over int16 data": ({"tag": 3}, ERROR),
        "data size x 2": ({"data_size": len(jfk) * 4}, ERROR),
        "data size / 2": ({"data_size": len(jfk)}, ANY),
        "data size 0 (unknown)": ({"data_size": 0}, SPEECH),
        "data size 0xFFFFFFFF": ({"data_size": 0xFFFFFFFF}, SPEECH),
        "RIFF size 0": ({"riff_size": 0}, ANY),
        "rate 2 Hz": ({"rate": 2, "byte_rate": 4}, ERROR),
    }
    cases = [
        Case(f"wav: {name}", wav_bytes(jfk, header=lie), "lie.wav", expect, family="lies")
        for name, (lie, expect) in wav_lies.items()
    ]
    flac = bytearray(encoded("flac", "flac", 44100))
    total = int.from_bytes(flac[21:26], "big") & 0xFFFFFFFFF  # STREAMINFO's 36-bit total samples
    for name, value, expect in (
        ("x 2", total * 2, ERROR),
        ("/ 2", total // 2, ANY),
        ("0", 0, SPEECH),
    ):
        lie = bytearray(flac)
        lie[21:26] = ((int.from_bytes(flac[21:26], "big") & ~0xFFFFFFFFF) | value).to_bytes(
            5, "big"
        )
        cases.append(
            Case(f"flac: total samples {name}", bytes(lie), "lie.flac", expect, family="lies")
        )
    aiff = bytearray(encoded("aiff", "pcm_s16be", 22050))
    comm = aiff.find(b"COMM") + 8
    aiff[comm + 2 : comm + 6] = (int.from_bytes(aiff[comm + 2 : comm + 6], "big") * 3).to_bytes(
        4, "big"
    )
    cases.append(Case("aiff: frames x 3", bytes(aiff), "lie.aiff", ERROR, family="lies"))
    m4a = bytearray(encoded("ipod", "aac", 44100))
    mdhd = m4a.find(b"mdhd") + 4 + 16  # version/flags, creation, modification, timescale
    m4a[mdhd : mdhd + 4] = (int.from_bytes(m4a[mdhd : mdhd + 4], "big") * 2).to_bytes(4, "big")
    cases.append(Case("m4a: mdhd duration x 2", bytes(m4a), "lie.m4a", ANY, family="lies"))
    for fmt, codec, rate, suffix, _ in FORMATS:
        data = bytearray(encoded(fmt, codec, rate))
        for i in rng.choice(min(64, len(data)), size=4, replace=False):
            data[i] = int(rng.integers(256))
        cases.append(
            Case(
                f"{fmt}/{codec}: 4 random header bytes",
                bytes(data),
                f"lie.{suffix}",
                ANY,
                family="lies",
            )
        )
    return cases


# -- not audio, or renamed ---------------------------------------------------------------------
def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("notes.txt", "not audio " * 500)
    return buffer.getvalue()


def video_only() -> bytes:
    """A Matroska file holding one video frame and no audio."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def not_audio_cases(rng: np.random.Generator) -> list[Case]:
    noise = rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    flac, mp3 = encoded("flac", "flac", 44100), encoded("mp3", "libmp3lame", 44100)
    items = [
        ("empty file", b"", "empty.wav", ERROR),
        ("one byte", b"\x00", "one.mp3", ERROR),
        ("text named .wav", b"meeting notes, not a recording\n" * 40, "notes.wav", ERROR),
        ("PNG named .mp3", b"\x89PNG\r\n\x1a\n" + bytes(3000), "image.mp3", ERROR),
        ("ZIP named .flac", _zip(), "archive.flac", ERROR),
        ("PDF", b"%PDF-1.4\n" + noise[:4000], "a.pdf", ERROR),
        ("HTML error page", b"<html><body>502 Bad Gateway</body></html>", "talk.m4a", ERROR),
        ("random bytes .flac", noise, "noise.flac", ERROR),
        ("random bytes .mp3", noise, "noise.mp3", ANY),
        ("random bytes, no name", noise, "upload", ANY),
        ("zero bytes", bytes(100_000), "zeros.ogg", ERROR),
        ("video without audio", video_only(), "film.mkv", ERROR),
        ("WAV header only", wav_bytes(np.zeros(0)), "header.wav", ERROR),
        ("FLAC header only", flac[:42], "header.flac", ERROR),
        ("'OggS' only", b"OggS", "a.ogg", ERROR),
        ("ID3 tag only", b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10), "tag.mp3", ERROR),
        ("flac named .mp3", flac, "misnamed.mp3", SPEECH),
        ("mp3 named .wav", mp3, "misnamed.wav", SPEECH),
        ("name with a newline", flac, "two\nlines.flac", SPEECH),
        ("newline name, not audio", b"nope" * 100, "bad\nname.wav", ERROR),
        ("ANSI escape in name", b"nope" * 100, "\x1b[31mred.wav", ERROR),
        ("unicode name", flac, "Ansprache – Ich bin ein Berliner ✓.flac", SPEECH),
        ("path traversal name", flac, "../../etc/passwd.flac", SPEECH),
        ("format string name", b"nope" * 100, "%s%n{0}.wav", ERROR),
    ]
    return [
        Case(name, data, filename, expect, family="not audio")
        for name, data, filename, expect in items
    ]


# -- random mutations of real files ------------------------------------------------------------
def _mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    b, n = bytearray(data), len(data)
    i, j = sorted(int(v) for v in rng.integers(0, n, 2))
    kind = str(
        rng.choice(
            [
                "flip bits",
                "flip header bits",
                "zero a range",
                "random range",
                "delete a range",
                "duplicate a range",
                "insert junk",
                "cut",
                "append junk",
                "swap halves",
                "repeat",
            ]
        )
    )
    if kind == "flip bits":
        for k in rng.integers(0, n, int(rng.integers(1, 50))):
            b[k] ^= 1 << int(rng.integers(8))
    elif kind == "flip header bits":
        for k in rng.integers(0, min(n, 512), int(rng.integers(1, 8))):
            b[k] ^= 1 << int(rng.integers(8))
    elif kind == "zero a range":
        b[i:j] = bytes(j - i)
    elif kind == "random range":
        b[i:j] = rng.integers(0, 256, j - i, dtype=np.uint8).tobytes()
    elif kind == "delete a range":
        del b[i:j]
    elif kind == "duplicate a range":
        b[j:j] = b[i:j]
    elif kind == "insert junk":
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    elif kind == "cut":
        del b[i:]
    elif kind == "append junk":
        b += rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    elif kind == "swap halves":
        b = b[n // 2 :] + b[: n // 2]
    else:
        b = b * 2
    return kind, bytes(b)


def mutation_cases(rng: np.random.Generator, count: int, formats=FORMATS) -> list[Case]:
    """``count`` random damages of the JFK clip in random formats: anything may come of them
    except a traceback, another exception or NaN."""
    cases = []
    for k in range(count):
        fmt, codec, rate, suffix, _ = formats[int(rng.integers(len(formats)))]
        kind, data = _mutate(encoded(fmt, codec, rate), rng)
        cases.append(
            Case(
                f"mutation {k}: {kind} in {fmt}/{codec}",
                data,
                f"m{k}.{suffix}",
                ANY,
                family="mutations",
            )
        )
    return cases


def all_cases(
    seed: int = 0,
    mutations: int = 40,
    long: bool = False,
    families: Callable[[str], bool] = lambda family: True,
) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = [
        *format_cases(),
        *truncation_cases(),
        *signal_cases(rng, long),
        *array_cases(rng),
        *lying_headers(rng),
        *not_audio_cases(rng),
        *mutation_cases(rng, mutations),
    ]
    return [c for c in cases if families(c.family)]
