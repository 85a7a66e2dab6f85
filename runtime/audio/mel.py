"""The log-mel every backend feeds its encoder, in numpy, matching openai-whisper's exactly.

One implementation for all backends (faster-whisper's feature extractor is the model): the same
audio gives the same features everywhere, so backends differ only in what they do after this.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from runtime.audio.constants import (  # noqa: F401 - re-exported: mel's callers use them
    CHUNK_LENGTH,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    N_SAMPLES_PER_TOKEN,
    SAMPLE_RATE,
    TOKENS_PER_SECOND,
)

LOG_FLOOR = 1e-10  # mel power clipped here before log10, as whisper does
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest value (80 dB)
_BLOCK_FRAMES = 1024  # frames per FFT block: temporaries stay in cache (~2 MB) whatever the length


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3  # Hz per mel in the linear part
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp  # 15 mels at 1 kHz
    logstep = np.log(6.4) / 27.0  # 27 mels per factor 6.4 in frequency
    freqs = np.asarray(freqs, dtype=np.float64)
    mels = freqs / f_sp
    high = freqs >= min_log_hz
    mels[high] = min_log_mel + np.log(freqs[high] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of _hz_to_mel."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = np.asarray(mels, dtype=np.float64)
    freqs = f_sp * mels
    high = mels >= min_log_mel
    freqs[high] = min_log_hz * np.exp(logstep * (mels[high] - min_log_mel))
    return freqs


@functools.cache
def mel_filters(n_mels: int) -> np.ndarray:
    """The (n_mels, N_FFT // 2 + 1) float32 filterbank whisper was trained with.

    Computed as librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels) does (Slaney mel scale,
    Slaney area normalization), which is how whisper's mel_filters.npz was made; computing it keeps
    a binary asset out of the package and gives any n_mels. Cached: callers must not modify it.
    """
    if n_mels <= 0:
        raise ValueError(f"n_mels must be positive, got {n_mels}")
    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)  # 201 bin centres, 0..8000 Hz
    mel_edges = np.linspace(
        _hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0], n_mels + 2
    )
    hz_edges = _mel_to_hz(mel_edges)  # n_mels + 2 edges: each triangle spans three of them
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[
        :, None
    ]  # Slaney: each triangle has unit area
    filters = weights.astype(np.float32)
    filters.flags.writeable = False
    return filters


@functools.lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    """Periodic Hann window of N_FFT samples (torch.hann_window's default, not np.hanning)."""
    n = np.arange(N_FFT, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)
    window.flags.writeable = False
    return window


def pad_or_trim(array: np.ndarray, length: int = N_SAMPLES, *, axis: int = -1) -> np.ndarray:
    """Zero-pad or cut `array` along `axis` to `length`, as the encoder's fixed input needs."""
    size = array.shape[axis]
    if size > length:
        return np.take(array, np.arange(length), axis=axis)
    if size < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - size)
        return np.pad(array, widths)
    return array


_BLAS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """NumPy's BLAS on one thread for the mel's filterbank products.

    OpenBLAS's worker threads busy-wait for a while after every threaded call. After a mel on
    2 cores they took one core from the ONNX Runtime encoder that followed: 110-140 ms per window
    instead of 70. The products are small (80 mel bins), so one thread costs almost nothing. The
    limit is process-wide, hence the lock (held for one product): overlapping limits could
    restore the wrong count.
    """
    with _BLAS_LOCK, _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _padded_segment(audio: np.ndarray, padding: int, start: int, stop: int) -> np.ndarray:
    """padded[start:stop] of the STFT input, built only for this block.

    The STFT input is `audio` followed by `padding` zeros, reflect-padded by N_FFT // 2 at both
    ends (torch.stft's center=True). Building it per block, as a view wherever the block lies
    inside the audio, avoids copying a long signal whole (np.pad would, twice with padding).
    """
    offset = N_FFT // 2
    lo, hi = start - offset, stop - offset  # in the coordinates of audio + zeros
    if lo >= 0 and hi <= len(audio):
        return audio[lo:hi]
    if len(audio) == 0:  # only padding: all zeros, reflected or not
        return np.zeros(hi - lo, dtype=np.float32)
    length = len(audio) + padding
    index = np.arange(lo, hi)
    period = 2 * (length - 1)  # reflection without repeating the edge sample, as "reflect" pads
    index = np.abs(index) % period
    index = np.where(index >= length, period - index, index)
    inside = index < len(audio)
    return np.where(inside, audio[np.minimum(index, len(audio) - 1)], np.float32(0.0)).astype(
        np.float32
    )


def _live_frames(n_samples: int, padding: int, n_frames: int) -> int:
    """Frames to transform: every block that has a frame seeing audio. Past those, with at least
    N_FFT zeros of padding (whisper adds 30 s), every window holds only zeros (the end's
    reflection mirrors zeros too): power exactly 0, value log10(LOG_FLOOR). Whole blocks, so
    each product has the rows it would have had (BLAS rounds differently for other row counts)
    and the result is bit-identical. A 7 s clip padded to 37 s needs a quarter of the FFTs."""
    if padding < N_FFT:
        return n_frames
    audible = -(-(n_samples + N_FFT // 2) // HOP_LENGTH)
    return min(n_frames, -(-audible // _BLOCK_FRAMES) * _BLOCK_FRAMES)


def _log_mel_unclamped(
    audio: np.ndarray, padding: int, filters: np.ndarray, out: np.ndarray
) -> None:
    """Write log10(clip(mel power)) of one 1-D signal into `out` (n_mels, n_frames), block by block.

    Equivalent to torch.stft(center=True, pad_mode="reflect") with the last frame dropped, as in
    whisper: frame i covers padded[i * HOP : i * HOP + N_FFT] of the reflect-padded signal.
    """
    n_frames = _live_frames(len(audio), padding, out.shape[1])
    out[:, n_frames:] = np.log10(np.float32(LOG_FLOOR))
    window = _hann_window()
    filters_t = np.ascontiguousarray(filters.T)  # (bins, n_mels): one GEMM per block
    for start in range(0, n_frames, _BLOCK_FRAMES):
        stop = min(start + _BLOCK_FRAMES, n_frames)
        segment = _padded_segment(
            audio, padding, start * HOP_LENGTH, (stop - 1) * HOP_LENGTH + N_FFT
        )
        frames = np.lib.stride_tricks.sliding_window_view(segment, N_FFT)[::HOP_LENGTH]
        spectrum = np.fft.rfft(frames * window, axis=-1)  # complex64 in NumPy >= 2
        power = spectrum.real**2 + spectrum.imag**2
        with _one_blas_thread():
            mel = power.astype(np.float32, copy=False) @ filters_t
        np.log10(np.maximum(mel, LOG_FLOOR, out=mel), out=mel)
        out[:, start:stop] = mel.T


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, padding: int = 0) -> np.ndarray:
    """Whisper's log-mel features: (n_mels, n_frames) for 1-D audio, (B, n_mels, n_frames) for 2-D.

    `audio` is float 16 kHz mono; `padding` zero samples are appended first (whisper pads 30 s so
    the last window is complete). n_frames = (samples + padding) // HOP_LENGTH. Values are
    log10 mel power, floored at 8 below the maximum of the whole signal (of each row for a
    batch), then scaled as (x + 4) / 4, all as whisper computes them.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2):
        raise ValueError(
            f"audio must be 1-D (samples) or 2-D (batch, samples), got shape {audio.shape}"
        )
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    rows = audio[None] if audio.ndim == 1 else audio
    n_frames = (rows.shape[1] + padding) // HOP_LENGTH
    filters = mel_filters(n_mels)
    out = np.empty((rows.shape[0], n_mels, n_frames), dtype=np.float32)
    for row, row_out in zip(rows, out, strict=True):
        if n_frames:
            _log_mel_unclamped(row, padding, filters, row_out)
            np.maximum(row_out, row_out.max() - DYNAMIC_RANGE, out=row_out)
    out += 4.0
    out /= 4.0
    return out[0] if audio.ndim == 1 else out
