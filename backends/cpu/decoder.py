"""The numpy decoder's KV-cached state, implementing ``runtime.backend.DecoderState``.

Self-attention caches are preallocated to the text context (448 tokens) so a step writes in
place instead of concatenating. Cross-attention keys and values are computed once per window and
shared by every row decoding that window (beam hypotheses point at the same arrays until rows of
different windows are mixed by a ``keep``).
"""

from __future__ import annotations

import numpy as np

from backends.cpu.model import Block, NumpyWhisper, layer_norm
from runtime.backend import check_tokens


class NumpyDecoderState:
    def __init__(self, net: NumpyWhisper, features: np.ndarray) -> None:
        self.net = net
        features = np.asarray(features, dtype=net.dtype)
        self.n_rows = features.shape[0]
        # per layer: (K, V) of shape (n_windows, H, 1500, dh), computed once
        self._cross_base = [self._cross_kv(b, features) for b in net.dec_blocks]
        self._window_of_row = np.arange(self.n_rows)
        self._cross = self._cross_base
        dims = net.dims
        shape = (
            self.n_rows,
            dims.n_text_head,
            dims.n_text_ctx,
            dims.n_text_state // dims.n_text_head,
        )
        self._k = [np.zeros(shape, net.dtype) for _ in net.dec_blocks]  # (B, H, ctx, dh)
        self._v = [np.zeros(shape, net.dtype) for _ in net.dec_blocks]
        self.length = 0

    @staticmethod
    def _cross_kv(block: Block, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, _ = block.cross()
        return a.split(a.key(features)), a.split(a.value(features))

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self._k = [k[rows] for k in self._k]
        self._v = [v[rows] for v in self._v]
        windows = self._window_of_row[rows]
        if not np.array_equal(windows, self._window_of_row):
            self._window_of_row = windows
            self._cross = [(k[windows], v[windows]) for k, v in self._cross_base]
        self.n_rows = len(rows)

    def logits(self, tokens: np.ndarray, positions: tuple[int, ...] = (-1,)) -> np.ndarray:
        return self.logits_and_attention(tokens, positions, ())[0]

    def logits_and_attention(
        self, tokens: np.ndarray, positions: tuple[int, ...], heads: tuple[tuple[int, int], ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits at ``positions`` and the cross-attention scores of ``heads`` (layer, head):
        (B, len(heads), T, n_audio_ctx) float32 (see ``runtime.backend.AttentionState``)."""
        tokens = check_tokens(tokens, self.n_rows, self.length, self.net.dims.n_text_ctx)
        t = tokens.shape[1]
        start, end = self.length, self.length + t
        net = self.net
        x = net.token_embedding[tokens] + net.dec_pos[start:end]
        mask = None
        if t > 1:  # causal within the new tokens; everything cached before is visible
            mask = np.triu(np.full((t, end), -np.inf, dtype=net.dtype), k=start + 1)
        scores: dict[int, np.ndarray] = {}
        wanted = {layer for layer, _ in heads}
        for i, block in enumerate(net.dec_blocks):
            h = layer_norm(x, *block.attn_ln)
            a = block.attn
            self._k[i][:, :, start:end] = a.split(a.key(h))
            self._v[i][:, :, start:end] = a.split(a.value(h))
            x = x + a.attend(
                a.split(a.query(h)), self._k[i][:, :, :end], self._v[i][:, :, :end], mask
            )
            c, c_ln = block.cross()
            h = layer_norm(x, *c_ln)
            ck, cv = self._cross[i]
            if i in wanted:
                out, scores[i] = c.attend_with_scores(c.split(c.query(h)), ck, cv)
                x = x + out
            else:
                x = x + c.attend(c.split(c.query(h)), ck, cv)
            x = x + block.mlp(x)
        self.length = end
        picked = layer_norm(x[:, list(positions)], *net.dec_ln)
        logits = (picked @ net.embedding_t).astype(np.float32, copy=False)
        qk = np.zeros((self.n_rows, len(heads), t, ck.shape[2]), dtype=np.float32)
        for n, (layer, head) in enumerate(heads):
            qk[:, n] = scores[layer][:, head]
        return logits, qk
