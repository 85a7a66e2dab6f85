"""Audio input: any common file (or bytes, or an array) to float32 16 kHz mono.

Decoding is PyAV (FFmpeg bundled, so no ffmpeg binary is needed); resampling is soxr, streamed so a
long file is never held whole at its native rate. Bad input raises AudioError with one line that
names the file, the problem and what to do; a truncated file is an error, not a silently short
transcript.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soxr

from runtime.errors import AudioError

SAMPLE_RATE = 16000  # Hz: what every Whisper model was trained on

AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO | np.ndarray

logger = logging.getLogger(__name__)

_MAX_ARRAY_CHANNELS = 8  # a 2-D array's smaller side up to this is taken as channels
_TRUNCATION_SLACK_S = 0.5  # encoder priming/padding and rounding never lose this much
_TRUNCATION_SLACK_FRACTION = 0.005  # container durations of long files may be off by a little
_RESAMPLE_CHUNK = 1 << 16  # native-rate samples gathered before each soxr call (fewer tiny calls)


@functools.lru_cache(maxsize=1)
def _quiet_ffmpeg() -> None:
    """FFmpeg logs every recoverable glitch to stderr; we report problems ourselves, once, clearly.

    Done on first use, not at import, and only once, so a later av.logging.set_level by the
    user (to debug a file) still wins.
    """
    level = av.logging.get_level()
    if level is not None and level > av.logging.PANIC:
        av.logging.set_level(av.logging.PANIC)


def _label(source: AudioSource) -> str:
    """How error messages name the input."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes of audio>"
    return str(getattr(source, "name", "<audio stream>"))


def _source_size(source: AudioSource) -> int | None:
    """Byte size of the input where it is cheap to know (for the bitrate-estimate check)."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source)
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        position = source.tell()
        size = source.seek(0, io.SEEK_END)
        source.seek(position)
        return size
    return None


def _check_path(path: Path) -> None:
    """Name the common path mistakes before FFmpeg turns them into a vague error."""
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path and the working directory")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; pass one of the files inside it")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-export or re-download it")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied; make the file readable")


@contextlib.contextmanager
def _open_audio(source: AudioSource) -> Iterator[tuple[av.container.InputContainer, av.audio.stream.AudioStream]]:
    """Open `source` with PyAV and pick its best audio stream, mapping failures to AudioError."""
    _quiet_ffmpeg()
    label = _label(source)
    if isinstance(source, (str, os.PathLike)):
        _check_path(Path(source))
        target: str | BinaryIO = os.fspath(source)
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError(f"{label}: no data (0 bytes); send the audio file's contents")
        target = io.BytesIO(source)
    else:
        target = source
    try:
        container = av.open(target, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise AudioError(
            f"{label}: not a readable audio or video file, or a damaged one (FFmpeg found no known format in it); "
            "check that it really is audio, or re-export it as wav or flac"
        ) from None
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioError(f"{label}: cannot be opened ({reason}); check the file, or convert it to wav or flac") from exc
    with container:
        stream = container.streams.best("audio")
        if stream is None:
            found = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise AudioError(f"{label}: contains no audio stream (found: {found}); pass a file with sound in it")
        yield container, stream


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """The audio's duration as the file declares it, without decoding; None where it does not say.

    The container's overall duration is used only when the audio is its only stream: in a video
    file it may be the (longer) video track's.
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _wav_declared_seconds(source: AudioSource, stream: av.audio.stream.AudioStream) -> float | None:
    """A WAV's duration as its header's data-chunk size states it.

    FFmpeg clamps that size to the bytes actually present, so a WAV cut short declares a short
    duration to PyAV; reading the header ourselves is the only way to see the cut.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            head = file.read(1 << 16)
    elif isinstance(source, (bytes, bytearray)):
        head = bytes(source[: 1 << 16])
    else:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE" or not stream.bit_rate:
        return None
    position = 12
    while position + 8 <= len(head):
        chunk_id, size = head[position : position + 4], int.from_bytes(head[position + 4 : position + 8], "little")
        if chunk_id == b"data":  # 0 and 0xFFFFFFFF mean "unknown" (a recording still being written)
            return None if size in (0, 0xFFFFFFFF) else size * 8 / stream.bit_rate
        position += 8 + size + (size & 1)
    return None


def _is_bitrate_estimate(stream: av.audio.stream.AudioStream, declared: float, size: int | None) -> bool:
    """True when FFmpeg guessed the duration as file size / bitrate (mp3 or ADTS with no header).

    Such a guess comes from the first frames' bitrate and can be several times too long for a
    variable-bitrate file, so falling short of it is no evidence of truncation.
    """
    if not size or not stream.bit_rate or declared <= 0:
        return False
    return abs(size * 8 / stream.bit_rate - declared) <= 0.02 * declared + 0.1


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as float32 mono in [-1, 1], channels averaged."""
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, len(frame.layout.channels)).T  # interleaved -> (channels, samples)
    data = _to_float32(data)
    return data[0] if data.shape[0] == 1 else data.mean(axis=0)


def _to_float32(data: np.ndarray) -> np.ndarray:
    """Scale integer PCM to [-1, 1) float32 (int16 by 1/32768, and so on); floats pass through."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    full_scale = float(2 ** (data.dtype.itemsize * 8 - 1))
    if data.dtype.kind == "u":  # unsigned PCM (u8) is offset by half its range
        return (data.astype(np.float32) - full_scale) / full_scale
    if data.dtype.kind == "i":
        return data.astype(np.float32) / full_scale
    raise AudioError(f"unsupported sample type {data.dtype}; pass float32, float64 or integer PCM")


def _decode_native(source: AudioSource) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (mono float32 chunk, its sample rate) for the whole audio stream of `source`.

    A packet FFmpeg cannot decode is skipped (as the ffmpeg tool does) and logged; at the end the
    decoded length is checked against the declared one, which is how a truncated file shows:
    FFmpeg decodes what is there and only logs errors, so without this check a file cut in half
    would silently give half a transcript.
    """
    label = _label(source)
    with _open_audio(source) as (container, stream):
        declared = _declared_seconds(container, stream)
        if container.format.name == "wav":
            declared = _wav_declared_seconds(source, stream) or declared
        decoded, errors = 0.0, []
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # the container itself is cut or damaged here
                errors.append(exc)
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                errors.append(exc)
                continue
            for frame in frames:
                decoded += frame.samples / frame.sample_rate
                yield _frame_to_mono(frame), frame.sample_rate
        _check_complete(label, stream, declared, decoded, errors, _source_size(source))


def _check_complete(
    label: str,
    stream: av.audio.stream.AudioStream,
    declared: float | None,
    decoded: float,
    errors: list[Exception],
    size: int | None,
) -> None:
    """Raise AudioError for a stream that decoded to nothing or to clearly less than it declares."""
    detail = f" (FFmpeg: {getattr(errors[0], 'strerror', None) or errors[0]})" if errors else ""
    if decoded == 0:
        raise AudioError(f"{label}: the audio stream decoded to 0 samples{detail}; it holds no sound, re-export it")
    slack = _TRUNCATION_SLACK_S + _TRUNCATION_SLACK_FRACTION * (declared or 0.0)
    if declared is not None and declared - decoded > slack:
        if not _is_bitrate_estimate(stream, declared, size):
            raise AudioError(
                f"{label}: truncated or corrupt: declared {declared:.1f} s, decoded {decoded:.1f} s{detail}; "
                "re-download or re-export the file"
            )
        logger.warning("%s: decoded %.1f s; FFmpeg's %.1f s from the bitrate is a guess", label, decoded, declared)
    if errors:
        logger.warning("%s: skipped %d undecodable packet(s)%s", label, len(errors), detail)


def _resampled(source: AudioSource, sample_rate: int) -> Iterator[np.ndarray]:
    """Yield float32 mono chunks of `source` at `sample_rate`, resampled as a stream.

    Small decoded frames are gathered to ~64k samples before each soxr call: per-call overhead
    dominates otherwise. A change of rate mid-stream (rare, e.g. spliced streams) restarts soxr.
    """
    resampler: soxr.ResampleStream | None = None
    pending: list[np.ndarray] = []
    pending_len, rate = 0, 0
    for chunk, chunk_rate in _decode_native(source):
        if chunk_rate != rate and pending:
            yield from _flush(resampler, pending, rate, sample_rate, last=True)
            pending, pending_len = [], 0
        if chunk_rate != rate:
            rate = chunk_rate
            resampler = None
            if rate != sample_rate:
                resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
        pending.append(chunk)
        pending_len += len(chunk)
        if pending_len >= _RESAMPLE_CHUNK:
            yield from _flush(resampler, pending, rate, sample_rate, last=False)
            pending, pending_len = [], 0
    yield from _flush(resampler, pending, rate, sample_rate, last=True)


def _flush(
    resampler: soxr.ResampleStream | None, pending: list[np.ndarray], rate: int, sample_rate: int, *, last: bool
) -> Iterator[np.ndarray]:
    """Resample the gathered chunks (at the end of the stream, also what soxr still holds)."""
    data = np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)
    out = data if resampler is None else resampler.resample_chunk(data, last=last)
    if len(out):
        yield out.astype(np.float32, copy=False)


def _array_to_mono(array: np.ndarray) -> np.ndarray:
    """An in-memory signal (already at the target rate) as float32 mono."""
    if array.ndim == 2:
        if min(array.shape) > _MAX_ARRAY_CHANNELS:
            raise AudioError(
                f"audio array of shape {array.shape}: cannot tell channels from samples; "
                "pass (samples,), (channels, samples) or (samples, channels) "
                f"with at most {_MAX_ARRAY_CHANNELS} channels"
            )
        channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
        array = _to_float32(array).mean(axis=channel_axis)
    elif array.ndim != 1:
        raise AudioError(f"audio array of shape {array.shape}: expected 1-D samples or 2-D channels x samples")
    mono = _to_float32(array)
    if mono.size == 0:
        raise AudioError("audio array is empty (0 samples); pass some audio")
    if not np.isfinite(mono).all():
        raise AudioError("audio array contains NaN or infinite samples; clean the signal before transcribing")
    return np.ascontiguousarray(mono)


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `source` to a 1-D float32 mono array at `sample_rate` (16 kHz for Whisper).

    `source` is a path, the bytes of a file, a binary file object, or a numpy array (taken as
    already at `sample_rate`; integer PCM is scaled to [-1, 1); 2-D arrays are averaged to mono).
    Raises AudioError for anything that is not complete, decodable audio.
    """
    if isinstance(source, np.ndarray):
        return _array_to_mono(source)
    chunks = list(_resampled(source, sample_rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def iter_audio_blocks(
    source: AudioSource, block_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono blocks of exactly `block_seconds` (the last one shorter).

    Decoding and resampling are streamed, so a two-hour file costs a block of memory, not the
    whole signal. The blocks concatenated equal load_audio(source). A truncated file raises
    AudioError only at its end, after the blocks that could be decoded.
    """
    block = int(round(block_seconds * sample_rate))
    if block <= 0:
        raise ValueError(f"block_seconds must give at least one sample, got {block_seconds}")
    chunks = iter([_array_to_mono(source)]) if isinstance(source, np.ndarray) else _resampled(source, sample_rate)
    out, filled = np.empty(block, dtype=np.float32), 0  # chunks are copied in once, no joins
    for chunk in chunks:
        while len(chunk):
            n = min(block - filled, len(chunk))
            out[filled: filled + n] = chunk[:n]
            filled, chunk = filled + n, chunk[n:]
            if filled == block:
                yield out
                out, filled = np.empty(block, dtype=np.float32), 0
    if filled:
        yield out[:filled].copy()


def audio_duration(path: str | os.PathLike) -> float | None:
    """The audio stream's duration in seconds from the file's metadata, with no full decode.

    Cheap enough to plan work (progress bars, batching) before decoding. None when the file does
    not declare it; an estimate for variable-bitrate mp3 without a header. Raises AudioError for
    files that cannot be opened.
    """
    with _open_audio(path) as (container, stream):
        return _declared_seconds(container, stream)
