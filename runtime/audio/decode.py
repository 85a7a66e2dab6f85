"""Audio input: any common file (or bytes, or an array) to float32 16 kHz mono.

Decoding is PyAV (FFmpeg bundled, so no ffmpeg binary is needed); resampling is soxr, streamed so a
long file is never held whole at its native rate. Bad input raises AudioError with one line that
names the file, the problem and what to do; a truncated file is an error, not a silently short
transcript (unless ``allow_truncated``: then its readable part is transcribed, with a warning).
NaN or infinite samples are refused; float samples beyond full scale (an unnormalized export, an
int16 signal passed as floats) are scaled down to full scale, with a warning.
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

from runtime.audio import checks as audio_checks
from runtime.audio.constants import SAMPLE_RATE
from runtime.errors import AudioError, one_line

FileSource = str | os.PathLike | bytes | bytearray | BinaryIO  # what FFmpeg decodes
AudioSource = FileSource | np.ndarray  # an array is taken as samples already

logger = logging.getLogger(__name__)

_MAX_ARRAY_CHANNELS = 8  # a 2-D array's smaller side up to this is taken as channels
_RESAMPLE_CHUNK = 1 << 16  # native-rate samples gathered before each soxr call (fewer tiny calls)
_FLOAT_FORMATS = frozenset({"flt", "fltp", "dbl", "dblp"})  # decoded samples that can be NaN or > 1


@functools.lru_cache(maxsize=1)
def _quiet_ffmpeg() -> None:
    """FFmpeg logs every recoverable glitch to stderr; we report problems ourselves, once, clearly.

    Done on first use, not at import, and only once, so a later av.logging.set_level by the
    user (to debug a file) still wins.
    """
    level = av.logging.get_level()
    if level is not None and level > av.logging.PANIC:
        av.logging.set_level(av.logging.PANIC)


def _label(source: FileSource) -> str:
    """How error messages name the input (on one line, whatever the file name holds)."""
    if isinstance(source, (str, os.PathLike)):
        return one_line(str(source))
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes of audio>"
    return one_line(str(getattr(source, "name", "<audio stream>")))


def _source_size(source: FileSource) -> int | None:
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


def _check_path(path: Path, label: str) -> None:
    """Name the common path mistakes before FFmpeg turns them into a vague error."""
    if not path.exists():
        raise AudioError(f"{label}: no such file; check the path and the working directory")
    if path.is_dir():
        raise AudioError(
            f"{label}: is a directory, not an audio file; pass one of the files inside it"
        )
    if path.stat().st_size == 0:
        raise AudioError(f"{label}: file is empty (0 bytes); re-export or re-download it")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{label}: permission denied; make the file readable")


@contextlib.contextmanager
def _open_audio(
    source: FileSource,
) -> Iterator[tuple[av.container.InputContainer, av.audio.stream.AudioStream]]:
    """Open `source` with PyAV and pick its best audio stream, mapping failures to AudioError."""
    _quiet_ffmpeg()
    label = _label(source)
    if isinstance(source, (str, os.PathLike)):
        _check_path(Path(source), label)
        target: str | BinaryIO = os.fspath(source)
    elif isinstance(source, (bytes, bytearray)):
        if not source:
            raise AudioError(f"{label}: no data (0 bytes); send the audio file's contents")
        target = io.BytesIO(source)
    elif callable(getattr(source, "read", None)):
        target = source
    else:
        raise AudioError(
            f"cannot read audio from a {type(source).__name__}; pass a path, bytes, a binary "
            "file object or a numpy array"
        )
    try:
        container = av.open(target, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise AudioError(
            f"{label}: not a readable audio or video file, or a damaged one (FFmpeg found no "
            "known format in it); "
            "check that it really is audio, or re-export it as wav or flac"
        ) from None
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioError(
            f"{label}: cannot be opened ({reason}); check the file, or convert it to wav or flac"
        ) from exc
    with container:
        if container.format.name in audio_checks.WAV_FORMATS:
            audio_checks.check_wav_header(source, label)
        yield container, audio_checks.audio_stream(container, label, source)


def _channels(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame's samples as (channels, samples), in the decoder's sample type."""
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, len(frame.layout.channels)).T  # interleaved -> (channels, samples)
    return data


def _frame_to_mono(frame: av.AudioFrame, gain: float = 1.0) -> np.ndarray:
    """One decoded frame as float32 mono in [-1, 1], channels averaged; ``gain`` (float
    formats beyond full scale) is applied first, before float32 could overflow."""
    data = _channels(frame)
    if gain != 1.0:
        data = data * gain
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


def _frames(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    errors: list[Exception],
) -> Iterator[av.AudioFrame]:
    """Every frame of ``stream`` FFmpeg can decode. A packet it cannot decode is skipped (as the
    ffmpeg tool does) and a damaged container ends the stream; their errors go to ``errors``."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:  # the container itself is cut or damaged here
            errors.append(exc)
            return
        except IndexError:  # PyAV knows no stream FFmpeg found part-way (damaged FLV, MPEG-TS)
            errors.append(ValueError("a stream appears part-way through the file"))
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            errors.append(exc)
            continue
        yield from frames


def _decode_native(
    source: FileSource, allow_truncated: bool = False
) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (mono float32 chunk, its sample rate) for the whole audio stream of `source`.

    At the end the decoded length is checked against the declared one (and an Ogg file for its
    last page), which is how a truncated file shows: FFmpeg decodes what is there and only logs
    errors, so without this check a file cut in half would silently give half a transcript.
    """
    label = _label(source)
    start = _position(source)
    with _open_audio(source) as (container, stream):
        declared = audio_checks.header_declared_seconds(
            container.format.name, source, stream
        ) or audio_checks.declared_seconds(container, stream)
        gain = _float_pcm_gain(source, start, stream, label)
        decoded = 0.0
        errors: list[Exception] = []
        for frame in _frames(container, stream, errors):
            samples = _frame_to_mono(frame, gain)
            if frame.format.name in _FLOAT_FORMATS and not np.isfinite(samples).all():
                raise audio_checks.non_finite(label, decoded, samples[None], frame.sample_rate)
            decoded += frame.samples / frame.sample_rate
            yield samples, frame.sample_rate
        end_problem = (
            audio_checks.ogg_truncation(source) if container.format.name == "ogg" else None
        )
        audio_checks.check_complete(
            label,
            stream,
            declared,
            decoded,
            errors,
            _source_size(source),
            end_problem,
            allow_truncated,
        )


def _position(source: FileSource) -> int | None:
    """Where a file object's audio starts (a later pass rewinds to it); None for others."""
    if isinstance(source, (str, os.PathLike, bytes, bytearray)):
        return None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return source.tell()
    return None


def _float_pcm_gain(
    source: FileSource, start: int | None, stream: av.audio.stream.AudioStream, label: str
) -> float:
    """1, or 1 / peak for raw float PCM beyond full scale (an unnormalized export).

    Found by a first pass over the file, before any of it is transcribed (raw PCM decodes at
    disk speed); that pass also refuses NaN and infinite samples. Compressed codecs are not
    scanned (a second decode would cost too much): their decoders overshoot full scale a little
    on loud material, and that is harmless."""
    if not stream.codec_context.name.startswith("pcm_f"):
        return 1.0
    if not isinstance(source, (str, os.PathLike, bytes, bytearray)) and start is None:
        return 1.0  # a file object that cannot seek: non-finite samples are refused as they come
    peak, seconds = 0.0, 0.0
    with _rewound(source, start), _open_audio(source) as (container, scanned):
        for frame in _frames(container, scanned, []):  # damage is reported by the decoding pass
            data = _channels(frame)
            if not np.isfinite(data).all():
                raise audio_checks.non_finite(label, seconds, data, frame.sample_rate)
            peak = max(peak, float(np.abs(data).max(initial=0.0)))
            seconds += frame.samples / frame.sample_rate
    if peak <= 1.0:
        return 1.0
    logger.warning(
        "%s: float samples peak at %.4g, beyond full scale (1.0): scaled by %.3g (%.1f dB); "
        "normalize the export to avoid this",
        label,
        peak,
        1.0 / peak,
        -20 * np.log10(peak),
    )
    return 1.0 / peak


@contextlib.contextmanager
def _rewound(source: FileSource, start: int | None) -> Iterator[None]:
    """A file object read again from `start`, and put back where it was (PyAV is reading it)."""
    if start is None or isinstance(source, (str, os.PathLike, bytes, bytearray)):
        yield  # only a file object has a position (``_position``)
        return
    with audio_checks.kept_position(source):
        source.seek(start)
        yield


def resampled_chunks(
    source: FileSource, sample_rate: int, allow_truncated: bool = False
) -> Iterator[np.ndarray]:
    """Yield float32 mono chunks of `source` at `sample_rate`, resampled as a stream.

    Small decoded frames are gathered to ~64k samples before each soxr call: per-call overhead
    dominates otherwise. A change of rate mid-stream (rare, e.g. spliced streams) restarts soxr.
    """
    resampler: soxr.ResampleStream | None = None
    pending: list[np.ndarray] = []
    pending_len, rate = 0, 0
    for chunk, chunk_rate in _decode_native(source, allow_truncated):
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
    resampler: soxr.ResampleStream | None,
    pending: list[np.ndarray],
    rate: int,
    sample_rate: int,
    *,
    last: bool,
) -> Iterator[np.ndarray]:
    """Resample the gathered chunks (at the end of the stream, also what soxr still holds)."""
    data = np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)
    out = data if resampler is None else resampler.resample_chunk(data, last=last)
    if len(out):
        yield out.astype(np.float32, copy=False)


def array_to_mono(array: np.ndarray) -> np.ndarray:
    """An in-memory signal (already at the target rate) as float32 mono; float samples beyond
    full scale (often int16 values passed as floats) are scaled to it, with a warning."""
    if array.ndim == 2:
        if min(array.shape) > _MAX_ARRAY_CHANNELS:
            raise AudioError(
                f"audio array of shape {array.shape}: cannot tell channels from samples; "
                "pass (samples,), (channels, samples) or (samples, channels) "
                f"with at most {_MAX_ARRAY_CHANNELS} channels"
            )
    elif array.ndim != 1:
        raise AudioError(
            f"audio array of shape {array.shape}: expected 1-D samples or 2-D channels x samples"
        )
    if array.size == 0:
        raise AudioError("audio array is empty (0 samples); pass some audio")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise AudioError(
                "audio array contains NaN or infinite samples; clean the signal before transcribing"
            )
        peak = float(np.abs(array).max())
        if peak > 1.0:
            logger.warning(
                "audio array: samples peak at %.4g, beyond full scale (1.0): scaled by %.3g; "
                "pass floats in [-1, 1] (int16 values as np.int16)",
                peak,
                1.0 / peak,
            )
            array = array / peak  # a Python float keeps the array's float type
    mono = _to_float32(array)
    if mono.ndim == 2:
        mono = mono.mean(axis=0 if mono.shape[0] <= mono.shape[1] else 1)
    return np.ascontiguousarray(mono)


def load_audio(
    source: AudioSource, sample_rate: int = SAMPLE_RATE, *, allow_truncated: bool = False
) -> np.ndarray:
    """Decode `source` to a 1-D float32 mono array at `sample_rate` (16 kHz for Whisper).

    `source` is a path, the bytes of a file, a binary file object, or a numpy array (taken as
    already at `sample_rate`; integer PCM is scaled to [-1, 1); 2-D arrays are averaged to mono).
    Raises AudioError for anything that is not complete, decodable audio; with
    `allow_truncated`, a truncated file gives what it holds (and a warning) instead.
    """
    if isinstance(source, np.ndarray):
        return array_to_mono(source)
    chunks = list(resampled_chunks(source, sample_rate, allow_truncated))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def audio_duration(path: str | os.PathLike) -> float | None:
    """The audio stream's duration in seconds from the file's metadata, with no full decode.

    Cheap enough to plan work (progress bars, batching) before decoding. None when the file does
    not declare it; an estimate for variable-bitrate mp3 without a header. Raises AudioError for
    files that cannot be opened.
    """
    with _open_audio(path) as (container, stream):
        return audio_checks.declared_seconds(container, stream)
