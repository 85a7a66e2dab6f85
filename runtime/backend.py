"""The backend contract: what a plugin provides and what the core asks of it.

It follows openai-whisper's ``Inference`` seam: encode a batch of mel windows, then produce logits
for the next tokens with an explicit KV cache that the caller can rearrange. The decoding loop in
``runtime.decoding`` drives any backend through these methods only, so every backend yields the
same tokens for the same logits. Core code asks ``capabilities``; it never asks which backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from runtime.model.weights import WhisperModel


@dataclass(frozen=True)
class Capabilities:
    # batching
    batched_encoder: bool = True  # encodes B windows in one call
    batched_decoder: bool = True  # advances B sequences in one step
    # rows of different lengths decode side by side: its decoder states are ``JoinableState``s
    joinable_decoder: bool = False
    # static shapes (NPUs): ``encode`` takes any whole number of batches of one size; None = any
    encoder_batch_sizes: tuple[int, ...] | None = None
    # features
    word_timestamps: bool = False  # can return cross-attention weights
    precisions: tuple[str, ...] = ("fp32",)
    devices: tuple[str, ...] = ("cpu",)
    # the rows' decoder state lives in host memory (which then caps the batch size); False on
    # a device with memory of its own (CUDA)
    host_decoder_state: bool = True


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, why (shown by ``runtime detect``)."""

    ok: bool
    reason: str = ""
    device: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class LoadOptions:
    """What the runtime asks of a backend when loading a model (the profile's backend options)."""

    precision: str = "fp32"
    device: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific, validated by it
    emulate: bool = False  # run on the profile's stand-in for its hardware (``--emulate``)
    strict: bool = False  # fail rather than run any part on a fallback device (``--strict``)
    profile_dir: str | None = None  # the profile file's folder (files named relative to it)


class DecoderState(Protocol):
    """KV caches of B token sequences decoding against the same encoded windows."""

    def logits(self, tokens: np.ndarray, positions: tuple[int, ...] = (-1,)) -> np.ndarray:
        """Append ``tokens`` (B, T) to every row and return float32 logits (B, len(positions), V)
        at the given positions of those T new tokens."""

    def keep(self, rows: np.ndarray) -> None:
        """Keep (and reorder, or repeat) the given rows of the cache: beam search, finished rows."""


@runtime_checkable
class JoinableState(DecoderState, Protocol):
    """A ``DecoderState`` whose rows each advance from their own length, so rows prefilled in
    another state can ``join`` it while it decodes (iteration-level batching): what a backend
    declaring ``Capabilities.joinable_decoder`` hands out. A row's logits must not depend on
    the rows it decodes with."""

    n_rows: int

    def join(self, other: JoinableState) -> None:
        """Append ``other``'s rows after this state's; ``other`` is spent."""

    def reserve(self, rows: int) -> None:
        """At most ``rows`` rows will decode here at once (a hint: a backend may allocate for
        them as they join, up to it, rather than at once)."""

    def incoming(self, features: Any) -> JoinableState:
        """A new state for rows of ``features`` (encoder output) to prefill and then ``join``
        this one; a backend may build it in this state's free rows, so joining copies nothing."""


@runtime_checkable
class AttentionState(DecoderState, Protocol):
    """A ``DecoderState`` that can also return cross-attention weights: what a backend declaring
    ``Capabilities.word_timestamps`` hands out (word alignment, ``runtime.words``)."""

    def logits_and_attention(
        self, tokens: np.ndarray, positions: tuple[int, ...], heads: tuple[tuple[int, int], ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``logits``, and also the cross-attention scores of the (decoder layer, head) pairs
        ``heads`` for each of the T new tokens over every encoder frame: float32
        (B, len(heads), T, n_audio_ctx), q.k / sqrt(d_head) before the softmax."""


class Session(Protocol):
    """One loaded model on one device. ``BaseSession`` gives the optional parts defaults."""

    model: WhisperModel
    device: str
    capabilities: Capabilities  # the backend's, narrowed to what this session does

    def log_mel(self, audio: np.ndarray, padding: int = 0) -> Any:
        """Log-mel (n_mels, frames) of a whole 16 kHz signal, computed once, on the device."""

    def mel_windows(self, spans: list[tuple[Any, int, int]]) -> Any:
        """Slice ``(mel, start_frame, n_frames)`` spans (each from its own log-mel) and zero-pad
        each to 3000 frames: the encoder's input batch (B, n_mels, 3000), still on the device."""

    def take(self, features: Any, rows: np.ndarray) -> Any:
        """The given rows of encoded features (for re-decoding only some windows)."""

    def encode(self, mel: np.ndarray) -> Any:
        """Encode mel windows (B, n_mels, 3000) to audio features (B, n_audio_ctx, d_model).

        The result may stay on the backend's device; only this session's decoder reads it."""

    def decoder(self, features: Any) -> DecoderState:
        """A fresh decoder state over the encoded windows, one row per window."""

    def describe(self) -> str:
        """One line on what really runs where (precision, device, provider placement)."""

    def report(self) -> list[str]:
        """Several lines of the same (one per graph, say), shown by ``runtime detect``."""


class BaseSession:
    """A ``Session``'s optional parts: the log-mel and its windows on the host (numpy), rows of
    features by indexing, and ``report`` as ``describe``. A backend subclasses it and sets
    ``model``, ``device`` and ``capabilities``."""

    model: WhisperModel
    device: str = "cpu"
    capabilities: Capabilities = Capabilities()

    def describe(self) -> str:
        return f"{type(self).__name__} on {self.device}"

    def report(self) -> list[str]:
        return [self.describe()]

    def log_mel(self, audio: np.ndarray, padding: int = 0) -> np.ndarray:
        from runtime.audio.mel import log_mel_spectrogram

        return log_mel_spectrogram(audio, n_mels=self.model.dims.n_mels, padding=padding)

    def mel_windows(self, spans: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
        from runtime.audio.constants import N_FRAMES

        out = np.zeros((len(spans), self.model.dims.n_mels, N_FRAMES), dtype=np.float32)
        for i, (mel, start, n) in enumerate(spans):
            piece = mel[:, start : start + min(n, N_FRAMES)]
            out[i, :, : piece.shape[1]] = piece
        return out

    def take(self, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Consecutive rows as a view (no copy of the batch's features), others gathered."""
        rows = np.asarray(rows)
        if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
            return features[int(rows[0]) : int(rows[0]) + len(rows)]
        return features[rows]


@runtime_checkable
class Backend(Protocol):
    """A plugin's backend. Instances are cheap; ``load`` does the work."""

    name: str
    capabilities: Capabilities

    def available(self) -> Availability: ...

    def load(self, model: WhisperModel, options: LoadOptions) -> Session: ...


def check_tokens(tokens: np.ndarray, n_rows: int, length: int, n_ctx: int) -> np.ndarray:
    """The new tokens (B, T) of a decoder step as int64, after checking the row count and that
    the sequence stays inside the text context; every DecoderState starts with this."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    if tokens.ndim != 2 or tokens.shape[0] != n_rows:
        raise ValueError(f"decoder state holds {n_rows} rows, got tokens of shape {tokens.shape}")
    if length + tokens.shape[1] > n_ctx:
        raise ValueError(
            f"token sequence longer than the text context ({length + tokens.shape[1]})"
        )
    return tokens


def check_precision(capabilities: Capabilities, backend: str, precision: str) -> None:
    """``UnsupportedRequestError`` unless the backend declares ``precision`` (checked by the
    runtime before ``load``, so backends need not)."""
    from runtime.errors import UnsupportedRequestError

    if precision not in capabilities.precisions:
        raise UnsupportedRequestError(
            f"backend {backend!r} runs {', '.join(capabilities.precisions)}, not {precision!r}; "
            "choose one of those precisions"
        )


NumpyFrontend = BaseSession  # its earlier name (a plugin may still import it)
