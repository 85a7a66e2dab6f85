"""Whisper's encoder and decoder in numpy: the reference every other backend is checked against.

Layouts follow ``runtime.model.weights`` (openai-whisper names, PyTorch shapes). Linear weights are
transposed once at load so every projection is a plain ``x @ w`` on contiguous arrays, which is
what BLAS is fastest at. Activations run in the weights' compute dtype (float32 by default;
float64 for reference checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike
from scipy.special import erf

from runtime.model.weights import ModelDims, WhisperModel

# Bound the attention score matrix of one call (B * heads * 1500 * 1500 floats) by working
# through the batch in slices of this many windows.
ENCODER_ROWS_PER_SLICE = 2


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch.nn.GELU(), so outputs match the reference to float precision."""
    return 0.5 * x * (1.0 + erf(x * np.sqrt(0.5).astype(x.dtype)))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, -1, keepdims=True)
    return centered / np.sqrt(var + eps) * w + b


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


@dataclass
class Linear:
    w: np.ndarray  # (in, out): transposed once at load
    b: np.ndarray | None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.w
        if self.b is not None:
            y += self.b
        return y


@dataclass
class Attention:
    query: Linear
    key: Linear
    value: Linear
    out: Linear
    n_head: int

    def split(self, x: np.ndarray) -> np.ndarray:
        """(B, T, D) -> (B, H, T, D/H)."""
        b, t, d = x.shape
        return x.reshape(b, t, self.n_head, d // self.n_head).transpose(0, 2, 1, 3)

    def attend(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """q (B, H, Tq, dh), k/v (B, H, Tk, dh) -> (B, Tq, D). Scaling as whisper (dh^-0.5)."""
        return self.attend_with_scores(q, k, v, mask)[0]

    def attend_with_scores(
        self, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``attend``, and the scaled scores before the softmax (B, H, Tq, Tk): the
        cross-attention that word alignment reads."""
        scale = np.asarray(q.shape[-1] ** -0.5, dtype=q.dtype)
        scores = (q * scale) @ k.transpose(0, 1, 3, 2)
        if mask is not None:
            scores += mask
        weights = softmax(scores)  # a new array: ``scores`` is kept
        out = weights @ v
        b, h, t, dh = out.shape
        return self.out(out.transpose(0, 2, 1, 3).reshape(b, t, h * dh)), scores


@dataclass
class Block:
    attn: Attention
    attn_ln: tuple[np.ndarray, np.ndarray]
    cross_attn: Attention | None
    cross_attn_ln: tuple[np.ndarray, np.ndarray] | None
    mlp1: Linear
    mlp2: Linear
    mlp_ln: tuple[np.ndarray, np.ndarray]

    def mlp(self, x: np.ndarray) -> np.ndarray:
        return self.mlp2(gelu(self.mlp1(layer_norm(x, *self.mlp_ln))))

    def cross(self) -> tuple[Attention, tuple[np.ndarray, np.ndarray]]:
        """The cross-attention and its layer norm, which every decoder block has."""
        if self.cross_attn is None or self.cross_attn_ln is None:
            raise ValueError("an encoder block has no cross-attention")
        return self.cross_attn, self.cross_attn_ln


def _ln(w: dict[str, np.ndarray], prefix: str, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    return w[f"{prefix}.weight"].astype(dtype), w[f"{prefix}.bias"].astype(dtype)


def _linear(w: dict[str, np.ndarray], prefix: str, dtype: np.dtype) -> Linear:
    bias = w.get(f"{prefix}.bias")
    return Linear(
        np.ascontiguousarray(w[f"{prefix}.weight"].astype(dtype).T),
        None if bias is None else bias.astype(dtype),
    )


def _attention(w: dict[str, np.ndarray], prefix: str, n_head: int, dtype: np.dtype) -> Attention:
    return Attention(
        query=_linear(w, f"{prefix}.query", dtype),
        key=_linear(w, f"{prefix}.key", dtype),
        value=_linear(w, f"{prefix}.value", dtype),
        out=_linear(w, f"{prefix}.out", dtype),
        n_head=n_head,
    )


def _block(
    w: dict[str, np.ndarray], prefix: str, n_head: int, cross: bool, dtype: np.dtype
) -> Block:
    return Block(
        attn=_attention(w, f"{prefix}.attn", n_head, dtype),
        attn_ln=_ln(w, f"{prefix}.attn_ln", dtype),
        cross_attn=_attention(w, f"{prefix}.cross_attn", n_head, dtype) if cross else None,
        cross_attn_ln=_ln(w, f"{prefix}.cross_attn_ln", dtype) if cross else None,
        mlp1=_linear(w, f"{prefix}.mlp.0", dtype),
        mlp2=_linear(w, f"{prefix}.mlp.2", dtype),
        mlp_ln=_ln(w, f"{prefix}.mlp_ln", dtype),
    )


class NumpyWhisper:
    """Encoder and decoder weights prepared for numpy, in one compute dtype."""

    def __init__(self, model: WhisperModel, dtype: DTypeLike = np.float32) -> None:
        w, dims = model.weights, model.dims
        self.dims: ModelDims = dims
        self.dtype = np.dtype(dtype)
        dt = self.dtype
        # conv weights (out, in, k) -> (in * k, out) to apply as one matmul over stacked taps
        self.conv1_w = np.ascontiguousarray(
            w["encoder.conv1.weight"].astype(dt).reshape(dims.n_audio_state, -1).T
        )
        self.conv1_b = w["encoder.conv1.bias"].astype(dt)
        self.conv2_w = np.ascontiguousarray(
            w["encoder.conv2.weight"].astype(dt).reshape(dims.n_audio_state, -1).T
        )
        self.conv2_b = w["encoder.conv2.bias"].astype(dt)
        self.enc_pos = w["encoder.positional_embedding"].astype(dt)
        self.enc_blocks = [
            _block(w, f"encoder.blocks.{i}", dims.n_audio_head, False, dt)
            for i in range(dims.n_audio_layer)
        ]
        self.ln_post = _ln(w, "encoder.ln_post", dt)
        self.token_embedding = np.ascontiguousarray(w["decoder.token_embedding.weight"].astype(dt))
        self.embedding_t = np.ascontiguousarray(self.token_embedding.T)  # (D, V) for logits
        self.dec_pos = w["decoder.positional_embedding"].astype(dt)
        self.dec_blocks = [
            _block(w, f"decoder.blocks.{i}", dims.n_text_head, True, dt)
            for i in range(dims.n_text_layer)
        ]
        self.dec_ln = _ln(w, "decoder.ln", dt)

    # -- encoder ------------------------------------------------------------------------------
    @staticmethod
    def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
        """Conv1d, kernel 3, padding 1: channels-first (B, C, T) -> channels-last (B, T', O)."""
        bsz, c, t = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
        t_out = (t + 2 - 3) // stride + 1
        taps = [padded[:, :, k : k + stride * (t_out - 1) + 1 : stride] for k in range(3)]
        cols = np.stack(taps, axis=2).reshape(bsz, c * 3, t_out)  # (B, C*3, T') as (in, k)
        return cols.transpose(0, 2, 1) @ w + b

    def encode(self, mel: np.ndarray) -> np.ndarray:
        """mel (B, n_mels, 3000) -> features (B, 1500, D)."""
        mel = np.asarray(mel, dtype=self.dtype)
        parts = [
            self._encode_slice(mel[i : i + ENCODER_ROWS_PER_SLICE])
            for i in range(0, mel.shape[0], ENCODER_ROWS_PER_SLICE)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _encode_slice(self, mel: np.ndarray) -> np.ndarray:
        x = gelu(self._conv(mel, self.conv1_w, self.conv1_b, 1))
        x = gelu(self._conv(x.transpose(0, 2, 1), self.conv2_w, self.conv2_b, 2))
        if x.shape[1] != self.enc_pos.shape[0]:
            raise ValueError(
                f"encoder expects {2 * self.enc_pos.shape[0]} mel frames, got {mel.shape[-1]}"
            )
        x = x + self.enc_pos
        for block in self.enc_blocks:
            h = layer_norm(x, *block.attn_ln)
            a = block.attn
            x = x + a.attend(a.split(a.query(h)), a.split(a.key(h)), a.split(a.value(h)))
            x = x + block.mlp(x)
        return layer_norm(x, *self.ln_post)
