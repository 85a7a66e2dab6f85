"""What audio intake refuses, and why: the checks FFmpeg does not make.

FFmpeg believes a WAV header that contradicts itself (7 bits per sample in 2-byte frames gives
twice the samples, as noise), clamps a WAV's declared length to the bytes present, decodes an
Ogg stream cut short to a shorter stream with no error at all, and passes NaN samples on. These
checks read the few bytes that tell (a WAV's ``fmt `` and ``data`` chunk headers, an Ogg file's
last page) and what PyAV reports, and raise ``AudioError`` with one line that names the input,
the problem and what to do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

import av
import numpy as np

from runtime.errors import AudioError, TruncatedAudioError, one_line

logger = logging.getLogger("runtime.audio")  # one logger for audio intake, as users filter it

_TRUNCATION_SLACK_S = 0.5  # encoder priming/padding and rounding never lose this much
_TRUNCATION_SLACK_FRACTION = 0.005  # container durations of long files may be off by a little
HEAD_BYTES = 1 << 16  # a WAV's fmt and data headers come first (LIST chunks rarely exceed this)
OGG_TAIL_BYTES = 1 << 17  # holds the largest Ogg page (27 + 255 + 255 * 255 bytes) twice over
OGG_END_OF_STREAM = 0x04  # header_type flag of a logical stream's last page

W64_RIFF = b"riff\x2e\x91\xcf\x11"  # the start of Wave64's 'riff' GUID
WAVE_PCM, WAVE_FLOAT, WAVE_ALAW, WAVE_MULAW, WAVE_EXTENSIBLE = (
    0x0001,
    0x0003,
    0x0006,
    0x0007,
    0xFFFE,
)
_FRAMED_TAGS = {WAVE_PCM, WAVE_FLOAT, WAVE_ALAW, WAVE_MULAW}  # fixed bytes per sample frame
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # a data size of a recording still being written
MIN_SAMPLE_RATE = 1000  # Hz; telephone speech is 8000. A WAV "at 2 Hz" would be hours of nothing
HEADER_SIZED = ("wav", "w64", "caf")  # FFmpeg formats whose data size only their header states
WAV_FORMATS = ("wav", "w64")  # with a WAVEFORMATEX fmt chunk


@dataclass(frozen=True)
class WavHeader:
    """A WAV's ``fmt `` chunk, and its ``data`` chunk's size (None when absent or unknown)."""

    format_tag: int  # the sub-format's tag for WAVE_FORMAT_EXTENSIBLE
    channels: int
    sample_rate: int
    byte_rate: int
    block_align: int
    bits_per_sample: int
    valid_bits: int | None = None  # WAVE_FORMAT_EXTENSIBLE only
    data_size: int | None = None

    @property
    def framed(self) -> bool:
        """PCM, float, A-law or mu-law: every frame is ``block_align`` bytes."""
        return self.format_tag in _FRAMED_TAGS

    def contradiction(self) -> str | None:
        """Why the header cannot be believed, or None: FFmpeg would guess, and guess noise."""
        if self.channels == 0:
            return "declares 0 channels"
        if self.sample_rate == 0:
            return "declares a sample rate of 0 Hz"
        if not self.framed:
            return None
        if self.bits_per_sample == 0:
            return "declares 0 bits per sample"
        frame = self.channels * -(-self.bits_per_sample // 8)
        if self.block_align != frame:
            return (
                f"declares {self.bits_per_sample} bits per sample in {self.channels} "
                f"channel(s), {frame} byte(s) a frame, but frames of {self.block_align} "
                "byte(s) (block align)"
            )
        if self.byte_rate and self.byte_rate != self.sample_rate * self.block_align:
            return (
                f"declares {self.byte_rate} bytes per second, but {self.sample_rate} Hz "
                f"with {self.block_align}-byte frames is {self.sample_rate * self.block_align}"
            )
        if self.valid_bits is not None and self.valid_bits > self.bits_per_sample:
            return f"declares {self.valid_bits} valid bits in {self.bits_per_sample}-bit samples"
        return None

    def declared_seconds(self) -> float | None:
        """The data chunk's duration (framed formats with a known data size)."""
        if not self.framed or self.data_size is None or not self.block_align:
            return None
        return self.data_size / self.block_align / self.sample_rate

    def describe_tag(self) -> str:
        return f"WAV format tag 0x{self.format_tag:04X}"


def parse_wav_header(head: bytes) -> WavHeader | None:
    """The header of a RIFF/WAVE (or Sony Wave64) file from its first bytes; None if they hold
    no fmt chunk."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        position, id_size, size_bytes, align = 12, 4, 4, 2
    elif head[:8] == W64_RIFF and head[24:28] == b"wave":
        position, id_size, size_bytes, align = 40, 16, 8, 8
    else:
        return None
    header = None
    while position + id_size + size_bytes <= len(head):
        chunk_id = head[position : position + 4]  # a W64 chunk's GUID starts with the RIFF id
        size = int.from_bytes(head[position + id_size : position + id_size + size_bytes], "little")
        if id_size == 16:  # a W64 size counts its own 24-byte header
            size = max(0, size - 24)
        body_at = position + id_size + size_bytes
        if chunk_id == b"fmt " and size >= 16:
            header = _fmt_chunk(head[body_at : body_at + size])
        elif chunk_id == b"data":
            if header is None:
                return None
            return replace(header, data_size=None if size in _UNKNOWN_SIZES else size)
        position = body_at + size + (-size % align)
    return header


def _fmt_chunk(body: bytes) -> WavHeader:
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    valid_bits = None
    if tag == WAVE_EXTENSIBLE and len(body) >= 40:
        valid_bits = struct.unpack_from("<H", body, 18)[0] or None
        tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID starts with the tag
    return WavHeader(tag, channels, rate, byte_rate, block_align, bits, valid_bits)


def caf_declared_seconds(head: bytes) -> float | None:
    """A Core Audio File's duration as its header states it, for linear PCM ('lpcm'): FFmpeg
    clamps it to the bytes present, as for a WAV. None when unknown or not PCM."""
    if head[:4] != b"caff":
        return None
    rate = bytes_per_packet = None
    position = 8
    while position + 12 <= len(head):
        kind = head[position : position + 4]
        size = struct.unpack_from(">q", head, position + 4)[0]
        body = position + 12
        if kind == b"desc" and body + 32 <= len(head):
            rate, fmt, _, bytes_per_packet, frames_per_packet = struct.unpack_from(
                ">d4sIII", head, body
            )
            if fmt != b"lpcm" or frames_per_packet != 1:
                return None
        elif kind == b"data":
            if not rate or not bytes_per_packet or size < 4:  # -1: size unknown (still recording)
                return None
            return (size - 4) / bytes_per_packet / rate  # the data starts with a 4-byte edit count
        if size < 0:
            return None
        position = body + size
    return None


def ogg_truncation(source: Any) -> str | None:
    """Why an Ogg file does not end with a complete end-of-stream page, or None (also when its
    end cannot be read: a file object that cannot seek)."""
    tail = read_tail(source)
    return ogg_end_problem(tail) if tail else None


def ogg_end_problem(tail: bytes) -> str | None:
    """Why an Ogg file's last bytes are not a complete end-of-stream page, or None.

    Every Ogg writer closes a stream with a page flagged end-of-stream; a file cut short ends
    inside a page, or after a page that is not the last. ``tail`` is the file's end (at least
    ``OGG_TAIL_BYTES``, or the whole file)."""
    position = tail.rfind(b"OggS")
    while position >= 0:
        if _ogg_page_end(tail, position) == len(tail):
            if tail[position + 5] & OGG_END_OF_STREAM:
                return None
            return "the Ogg stream stops after a page that is not its last (no end-of-stream page)"
        position = tail.rfind(b"OggS", 0, position)
    return "the Ogg stream stops inside a page"


def _ogg_page_end(data: bytes, start: int) -> int | None:
    """Where the page whose capture pattern is at ``start`` ends, if its header is whole."""
    if start + 27 > len(data) or data[start + 4] != 0:  # stream structure version 0
        return None
    segments = data[start + 26]
    table = data[start + 27 : start + 27 + segments]
    if len(table) < segments:
        return None
    return start + 27 + segments + sum(table)


@contextlib.contextmanager
def kept_position(file: BinaryIO) -> Iterator[None]:
    """Seek freely in ``file``; its position is restored afterwards (PyAV may be reading it)."""
    position = file.tell()
    try:
        yield
    finally:
        file.seek(position)


def read_head(source: Any, size: int = HEAD_BYTES) -> bytes | None:
    """The first ``size`` bytes of a path, bytes or seekable file object; None otherwise."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return file.read(size)
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:size])
    with contextlib.suppress(AttributeError, OSError, ValueError), kept_position(source):
        source.seek(0)
        return source.read(size)
    return None


def read_tail(source: Any, size: int = OGG_TAIL_BYTES) -> bytes | None:
    """The last ``size`` bytes of a path, bytes or seekable file object; None otherwise."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - size))
            return file.read()
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[-size:])
    with contextlib.suppress(AttributeError, OSError, ValueError), kept_position(source):
        end = source.seek(0, io.SEEK_END)
        source.seek(max(0, end - size))
        return source.read()
    return None


# -- checks over what PyAV opened and decoded ------------------------------------------------
def audio_stream(
    container: av.container.InputContainer, label: str, source: Any
) -> av.audio.stream.AudioStream:
    """The best audio stream, or AudioError saying why there is none FFmpeg can decode."""
    stream = container.streams.best("audio")
    # PyAV's best("audio") gives an AudioStream or None (its stub says any Stream)
    if not isinstance(stream, av.audio.stream.AudioStream):
        audio = container.streams.audio  # the streams of type "audio", as AudioStreams
        if not audio:
            found = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise AudioError(
                f"{label}: contains no audio stream (found: {found}); pass a file with sound in it"
            )
        context = audio[0].codec_context  # FFmpeg probed the format but read no parameters
        missing = [
            what
            for what, ok in (
                ("a codec", context is not None),
                ("channels", context is not None and context.channels),
                ("a sample rate", context is not None and context.sample_rate),
            )
            if not ok
        ]
        raise AudioError(
            f"{label}: FFmpeg took it for {container.format.name} but found no playable audio "
            f"in it (an audio stream without {' or '.join(missing)}); the file is damaged or "
            "not audio: check it, or re-export it as wav or flac"
        )
    if stream.codec_context is None:
        header = parse_wav_header(read_head(source) or b"")
        codec = header.describe_tag() if header else "a codec FFmpeg does not know"
        raise AudioError(
            f"{label}: its audio is in {codec}, which FFmpeg cannot decode; "
            "convert it to PCM wav or flac"
        )
    if stream.codec_context.sample_rate < MIN_SAMPLE_RATE:  # hours of nothing from a few bytes
        raise AudioError(
            f"{label}: declares a sample rate of {stream.codec_context.sample_rate} Hz; "
            f"no speech is recorded at under {MIN_SAMPLE_RATE} Hz: the header is wrong "
            "or this is not audio"
        )
    return stream


def check_wav_header(source: Any, label: str) -> None:
    """Refuse a WAV header that contradicts itself: FFmpeg would guess, and decode noise."""
    header = parse_wav_header(read_head(source) or b"")
    problem = header.contradiction() if header else None
    if problem:
        raise AudioError(
            f"{label}: the WAV header contradicts itself: it {problem}; "
            "the file is damaged or was written wrongly: re-export it"
        )


def declared_seconds(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> float | None:
    """The audio's duration as the file declares it, without decoding; None where it does not say.

    The container's overall duration is used only when the audio is its only stream: in a video
    file it may be the (longer) video track's.
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def header_declared_seconds(
    format_name: str, source: Any, stream: av.audio.stream.AudioStream
) -> float | None:
    """A WAV's, W64's or CAF's duration as its header's data-chunk size states it.

    FFmpeg clamps that size to the bytes actually present, so a file cut short declares a short
    duration to PyAV; reading the header ourselves is the only way to see the cut.
    """
    if format_name not in HEADER_SIZED:
        return None
    head = read_head(source) or b""
    if format_name == "caf":
        return caf_declared_seconds(head)
    header = parse_wav_header(head)
    if header is None or header.data_size is None:
        return None
    bit_rate = getattr(stream, "bit_rate", None)
    if header.framed or not bit_rate:
        return header.declared_seconds()
    return header.data_size * 8 / bit_rate  # a compressed codec in a WAV (ADPCM, GSM...)


def is_bitrate_estimate(
    stream: av.audio.stream.AudioStream, declared: float, size: int | None
) -> bool:
    """True when FFmpeg guessed the duration as file size / bitrate (mp3 or ADTS with no header).

    Such a guess comes from the first frames' bitrate and can be several times too long for a
    variable-bitrate file, so falling short of it is no evidence of truncation.
    """
    bit_rate = getattr(stream, "bit_rate", None)
    if not size or not bit_rate or declared <= 0:
        return False
    return abs(size * 8 / bit_rate - declared) <= 0.02 * declared + 0.1


def non_finite(label: str, offset_s: float, channels: np.ndarray, rate: int) -> AudioError:
    """The error for NaN or infinite samples in (channels, samples), saying where the first is."""
    first = int(np.argmax(~np.isfinite(channels).all(axis=0)))
    return AudioError(
        f"{label}: contains NaN or infinite samples "
        f"(the first at {offset_s + first / rate:.2f} s); "
        "the file is damaged or was written from a broken signal: clean it or re-export it"
    )


def check_complete(
    label: str,
    stream: av.audio.stream.AudioStream,
    declared: float | None,
    decoded: float,
    errors: list[Exception],
    size: int | None,
    end_problem: str | None = None,
    allow_truncated: bool = False,
) -> None:
    """Raise AudioError for a stream that decoded to nothing or to clearly less than it declares
    (TruncatedAudioError, unless ``allow_truncated``: then a warning says what is transcribed)."""
    detail = (
        f" (FFmpeg: {one_line(str(getattr(errors[0], 'strerror', None) or errors[0]))})"
        if errors
        else ""
    )
    if decoded == 0 and declared:
        raise AudioError(
            f"{label}: truncated or corrupt: declared {declared:.1f} s, but not one sample "
            f"decodes{detail}; re-download or re-export the file"
        )
    if decoded == 0:
        raise AudioError(
            f"{label}: the audio stream decoded to 0 samples{detail}; it holds no sound, "
            "re-export it"
        )
    problem = None
    slack = _TRUNCATION_SLACK_S + _TRUNCATION_SLACK_FRACTION * (declared or 0.0)
    if declared is not None and declared - decoded > slack:
        if not is_bitrate_estimate(stream, declared, size):
            problem = (
                f"{label}: truncated or corrupt: declared {declared:.1f} s, the data ends "
                f"at {decoded:.1f} s{detail}"
            )
        else:
            logger.warning(
                "%s: decoded %.1f s; FFmpeg's %.1f s from the bitrate is a guess",
                label,
                decoded,
                declared,
            )
    elif end_problem:
        problem = f"{label}: truncated: {end_problem}; the data ends at {decoded:.1f} s{detail}"
    if problem:
        if not allow_truncated:
            raise TruncatedAudioError(problem, decoded)
        logger.warning(
            "%s; transcribing the first %.1f s (truncated input allowed)", problem, decoded
        )
    if errors:
        logger.warning("%s: skipped %d undecodable packet(s)%s", label, len(errors), detail)
