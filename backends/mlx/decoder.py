"""The MLX decoder's KV-cached state, implementing ``runtime.backend.DecoderState``.

Everything stays on the device as mx arrays: the self-attention caches, the cross-attention keys
and values of each window, the hidden states. Only the requested logits cross to numpy. A step
builds one lazy graph (all layers, the cache updates, the logits) and evaluates it with a single
``mx.eval``, so MLX schedules the whole step at once instead of syncing per operation.

The layers are mlx-whisper's modules (``TextDecoder.blocks``), driven here rather than through
``TextDecoder.__call__`` because that call slices its causal mask to the new tokens only
(``mask[:n, :n]``), which is wrong for several new tokens after a cached prefix, computes logits
for every position, and grows its caches by concatenation on every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.backend import check_tokens

CACHE_STEP = 64  # self-attention caches grow by this many positions at a time


class _SelfCache:
    """Keys and values of one layer, (B, H, capacity, dh), filled up to ``length``."""

    def __init__(self) -> None:
        self.keys: Any = None
        self.values: Any = None

    def update(self, k: Any, v: Any, start: int) -> tuple[Any, Any]:
        """Write k, v (B, H, T, dh) at ``start``; return the cache up to ``start + T``."""
        import mlx.core as mx

        end = start + k.shape[2]
        if self.keys is None or end > self.keys.shape[2]:
            grow = -(-end // CACHE_STEP) * CACHE_STEP - (
                0 if self.keys is None else self.keys.shape[2]
            )
            shape = (*k.shape[:2], grow, k.shape[3])
            pad_k, pad_v = mx.zeros(shape, k.dtype), mx.zeros(shape, v.dtype)
            if self.keys is None:
                self.keys, self.values = pad_k, pad_v
            else:
                self.keys = mx.concatenate([self.keys[:, :, :start], pad_k], axis=2)
                self.values = mx.concatenate([self.values[:, :, :start], pad_v], axis=2)
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]

    def keep(self, rows: Any) -> None:
        import mlx.core as mx

        if self.keys is not None:
            self.keys = mx.take(self.keys, rows, axis=0)
            self.values = mx.take(self.values, rows, axis=0)


def split_heads(x: Any, n_head: int) -> Any:
    """(B, T, D) -> (B, H, T, D/H)."""
    b, t, d = x.shape
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)


def merge_heads(x: Any) -> Any:
    """(B, H, T, dh) -> (B, T, H * dh)."""
    b, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * dh)


class MlxDecoderState:
    """B token sequences decoding against encoded windows, all on one MLX device."""

    def __init__(self, net: Any, features: Any, device: Any, logits_weight: Any = None) -> None:
        """``logits_weight``: the token embedding as (D, V) when the session keeps one (CPU)."""
        import mlx.core as mx

        self.net = net
        self.device = device
        self.logits_weight = logits_weight
        dims = net.dims
        self.n_head = dims.n_text_head
        self.scale = (dims.n_text_state // dims.n_text_head) ** -0.5
        self.n_ctx = dims.n_text_ctx
        with mx.stream(device):
            dtype = net.decoder.positional_embedding.dtype
            features = (
                features if isinstance(features, mx.array) else mx.array(np.asarray(features))
            )
            features = features.astype(dtype)
            # per layer: (K, V) of shape (n_windows, H, n_audio_ctx, dh); computed (lazily) once
            self._cross_base = [
                self._cross_kv(block.cross_attn, features) for block in net.decoder.blocks
            ]
        self._cross = self._cross_base
        self._window_of_row = np.arange(features.shape[0])
        self._self = [_SelfCache() for _ in net.decoder.blocks]
        self.n_rows = features.shape[0]
        self.length = 0

    def _cross_kv(self, attn: Any, features: Any) -> tuple[Any, Any]:
        return split_heads(attn.key(features), self.n_head), split_heads(
            attn.value(features), self.n_head
        )

    def keep(self, rows: np.ndarray) -> None:
        import mlx.core as mx

        rows = np.asarray(rows, dtype=np.int64)
        with mx.stream(self.device):
            index = mx.array(rows.astype(np.int32))
            for cache in self._self:
                cache.keep(index)
            windows = self._window_of_row[rows]
            if not np.array_equal(windows, self._window_of_row):
                self._window_of_row = windows
                win = mx.array(windows.astype(np.int32))
                self._cross = [
                    (mx.take(k, win, axis=0), mx.take(v, win, axis=0)) for k, v in self._cross_base
                ]
        self.n_rows = len(rows)

    def logits(self, tokens: np.ndarray, positions: tuple[int, ...] = (-1,)) -> np.ndarray:
        return self.logits_and_attention(tokens, positions, ())[0]

    def logits_and_attention(
        self, tokens: np.ndarray, positions: tuple[int, ...], heads: tuple[tuple[int, int], ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits at ``positions`` and the cross-attention scores of ``heads`` (layer, head),
        (B, len(heads), T, n_audio_ctx) float32 (see ``runtime.backend.AttentionState``)."""
        import mlx.core as mx

        tokens = check_tokens(tokens, self.n_rows, self.length, self.n_ctx)
        t = tokens.shape[1]
        with mx.stream(self.device):
            picks = mx.array([p % t for p in positions], dtype=mx.int32)
            scores: dict[int, Any] = {layer: None for layer, _ in heads}
            hidden = self._forward(mx.array(tokens.astype(np.int32)), scores)
            dec = self.net.decoder
            picked = dec.ln(hidden[:, picks])
            if self.logits_weight is None:
                logits = dec.token_embedding.as_linear(picked)
            else:
                logits = picked @ self.logits_weight
            logits = logits.astype(mx.float32)
            qk = (
                mx.stack([scores[layer][:, head] for layer, head in heads], axis=1).astype(
                    mx.float32
                )
                if heads
                else mx.zeros((self.n_rows, 0, t, 0))
            )
            # one evaluation per step: the logits and the caches the next step builds on
            mx.eval(logits, qk, *[c.keys for c in self._self], *[c.values for c in self._self])
        return np.asarray(logits), np.asarray(qk)

    def _forward(self, tokens: Any, scores: dict[int, Any] | None = None) -> Any:
        """The decoder blocks over ``tokens`` (B, T) appended at ``self.length``; hidden (B, T, D).
        Layers named in ``scores`` attend to the audio explicitly and leave their cross-attention
        scores (B, H, T, n_audio_ctx) there; the others use the fused kernel."""
        import mlx.core as mx
        import mlx.nn as nn

        dec = self.net.decoder
        start, t = self.length, tokens.shape[1]
        end = start + t
        x = dec.token_embedding(tokens) + dec.positional_embedding[start:end]
        mask = None
        if t > 1:  # causal within the new tokens; everything cached before is visible
            mask = mx.arange(end)[None, :] <= (start + mx.arange(t))[:, None]
        for i, (block, cache, (ck, cv)) in enumerate(zip(dec.blocks, self._self, self._cross)):
            a = block.attn
            h = block.attn_ln(x)
            k, v = cache.update(
                split_heads(a.key(h), self.n_head), split_heads(a.value(h), self.n_head), start
            )
            q = split_heads(a.query(h), self.n_head)
            out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
            x = x + a.out(merge_heads(out))
            c = block.cross_attn
            q = split_heads(c.query(block.cross_attn_ln(x)), self.n_head)
            if scores is not None and i in scores:
                scores[i] = (q * self.scale) @ ck.transpose(0, 1, 3, 2)
                out = mx.softmax(scores[i], axis=-1, precise=True) @ cv
            else:
                out = mx.fast.scaled_dot_product_attention(q, ck, cv, scale=self.scale)
            x = x + c.out(merge_heads(out))
            x = x + block.mlp2(nn.gelu(block.mlp1(block.mlp_ln(x))))
        self.length = end
        return x
