"""Whisper's log-mel frontend in MLX, so the features of a whole file are made on the device.

It is ``runtime.audio.mel`` written with MLX operations: the same filterbank
(``runtime.audio.mel.mel_filters``), the same periodic Hann window, the same reflect padding as
``torch.stft(center=True)`` and the same clamp and scaling, so it matches the numpy frontend to
float32 rounding (about 1e-5 on speech). Frames are processed in blocks so a long file never holds
all its FFT temporaries at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.audio.mel import DYNAMIC_RANGE, HOP_LENGTH, LOG_FLOOR, N_FFT, N_FRAMES, mel_filters

BLOCK_FRAMES = 8192  # frames per FFT block: ~13 MB of float32 frames, ~7 MB of spectrum


def hann_window() -> np.ndarray:
    """Periodic Hann window of N_FFT samples (torch.hann_window's default), as the numpy mel."""
    n = np.arange(N_FFT, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float32)


def reflect_indices(length: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into a signal of ``length`` samples of the ``count`` samples that reflect padding
    puts before and after it (edge sample not repeated; very short signals reflect repeatedly)."""
    period = 2 * (length - 1)
    folded = []
    for index in (
        np.abs(np.arange(-count, 0)) % period,
        np.arange(length, length + count) % period,
    ):
        folded.append(np.where(index >= length, period - index, index))
    return folded[0], folded[1]


def log_mel(audio: np.ndarray, n_mels: int, padding: int = 0) -> Any:
    """Log-mel (n_mels, frames) of 1-D 16 kHz ``audio`` followed by ``padding`` zeros, as an
    evaluated mx.array on the current default device; frames = (samples + padding) // HOP_LENGTH."""
    import mlx.core as mx

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D (samples), got shape {audio.shape}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    length = len(audio) + padding
    n_frames = length // HOP_LENGTH
    if n_frames == 0:
        return mx.zeros((n_mels, 0), dtype=mx.float32)
    signal = mx.concatenate([mx.array(audio), mx.zeros((padding,), dtype=mx.float32)])
    if length > 1:
        before, after = reflect_indices(length, N_FFT // 2)
        signal = mx.concatenate([signal[mx.array(before)], signal, signal[mx.array(after)]])
    else:  # one sample reflects onto itself
        signal = mx.pad(signal, [(N_FFT // 2, N_FFT // 2)], mode="edge")
    window = mx.array(hann_window())
    filters_t = mx.array(np.ascontiguousarray(mel_filters(n_mels).T))  # (bins, n_mels)
    blocks = []
    for start in range(0, n_frames, BLOCK_FRAMES):
        count = min(BLOCK_FRAMES, n_frames - start)
        frames = mx.as_strided(
            signal, shape=(count, N_FFT), strides=(HOP_LENGTH, 1), offset=start * HOP_LENGTH
        )
        spectrum = mx.fft.rfft(frames * window, axis=-1)
        power = mx.square(mx.real(spectrum)) + mx.square(mx.imag(spectrum))
        blocks.append(mx.log10(mx.maximum(power @ filters_t, LOG_FLOOR)))
    mel = mx.concatenate(blocks, axis=0).T  # (n_mels, n_frames)
    mel = mx.maximum(mel, mel.max() - DYNAMIC_RANGE)
    mel = (mel + 4.0) / 4.0
    mx.eval(mel)
    return mel


def mel_windows(spans: list[tuple[Any, int, int]], n_mels: int) -> Any:
    """(mel, start_frame, n_frames) spans, each of its own log-mel (n_mels, frames), zero-padded
    to N_FRAMES: a lazy (B, n_mels, N_FRAMES) mx.array that the encoder evaluates in its graph."""
    import mlx.core as mx

    pieces = []
    for mel, start, n in spans:
        if not isinstance(mel, mx.array):
            mel = mx.array(np.asarray(mel, dtype=np.float32))
        if mel.shape[0] != n_mels:
            raise ValueError(f"mel has {mel.shape[0]} bins, the model {n_mels}")
        piece = mel[:, start : start + min(n, N_FRAMES)]
        pieces.append(mx.pad(piece, [(0, 0), (0, N_FRAMES - piece.shape[1])]))
    if not pieces:
        return mx.zeros((0, n_mels, N_FRAMES), dtype=mx.float32)
    return mx.stack(pieces)
