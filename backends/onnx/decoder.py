"""``DecoderState`` over the ``cross_kv`` and ``decoder`` graphs (``runtime.backend.DecoderState``).

Cross-attention keys and values are computed once per window by the ``cross_kv`` graph. Rows
(beam hypotheses) of the same window share those arrays until a ``keep`` mixes windows, when
they are gathered once, as the numpy backend does. Self-attention caches are the decoder graph's
``present_*`` outputs fed back as the next step's ``self_*`` inputs: ONNX Runtime reads numpy
inputs in place and hands its outputs over without a copy, so the only copy per step is the
graph's own Concat of past and new entries, and ``keep`` costs one gather per cache array
(skipped when the rows are unchanged).

Rows that finish leave the batch without a gather of the survivors: each row's arrays live in a
physical slot, the survivors in slots past the new batch size move into the holes the finished
rows left, and the arrays are cut to a prefix (a view). A batch of 8 then copies one row's
18 MB of cross-attention keys and values per finished row (tiny.en) instead of every survivor's;
tokens go in and logits come out in the caller's row order.
"""

from __future__ import annotations

import numpy as np

from backends.onnx.export import quantized_per_call
from backends.onnx.sessions import Graph
from runtime.backend import check_tokens

# Tokens per decoder call while reading a long prompt: ONNX Runtime's arena keeps the largest
# buffers it ever handed out, and in one call a 223-token prompt's cross-attention scores at B=8
# take 66 MB a layer (15.5-min chapter: peak RSS 1052 MB, against 763 MB with 32-token prompts).
# In 48-token pieces: 790 MB, the same speed and text.
PROMPT_PIECE = 48


class OnnxDecoderState:
    def __init__(
        self, cross_kv: Graph, decoder: Graph, features: np.ndarray, n_text_ctx: int
    ) -> None:
        self.decoder = decoder
        self.n_text_ctx = n_text_ctx
        cm, dm = cross_kv.manifest, decoder.manifest
        features = np.ascontiguousarray(features, dtype=np.float32)
        k_names = [t.name for t in cm.outputs_of("cross_k")]
        v_names = [t.name for t in cm.outputs_of("cross_v")]
        out = self._cross_kv(cross_kv, k_names + v_names, features)
        n_layers = len(k_names)
        self._cross_base: list | None = list(zip(out[:n_layers], out[n_layers:]))  # (K_t, V)
        self._cross = self._cross_base  # per physical slot; the base's rows are windows
        self._shared = True  # self._cross holds the base's arrays (or views of them)
        self.n_rows = features.shape[0]
        self._slot_windows = np.arange(self.n_rows)  # window of each physical slot
        self._slot: np.ndarray | None = None  # physical slot of each row; None: the same index
        # names in the decoder graph, by role and layer, from its manifest
        self._tokens = dm.input("tokens").name
        self._positions = dm.input("positions").name
        self._in = {
            role: [t.name for t in dm.inputs_of(role)]
            for role in ("self_k", "self_v", "cross_k", "cross_v")
        }
        self._out = (
            [dm.output("logits").name]
            + [t.name for t in dm.outputs_of("present_k")]
            + [t.name for t in dm.outputs_of("present_v")]
        )
        qk = dm.outputs_of("cross_qk")  # graphs exported before word timestamps lack it
        self._qk = qk[0].name if qk else None
        self._heads = [tuple(h) for h in dm.details.get("alignment_heads", [])]
        k_spec, v_spec = dm.inputs_of("self_k")[0], dm.inputs_of("self_v")[0]
        dtype = np.dtype(k_spec.dtype)
        k_shape = (self.n_rows, *[0 if d == "past" else d for d in k_spec.shape[1:]])
        v_shape = (self.n_rows, *[0 if d == "past" else d for d in v_spec.shape[1:]])
        self._k = [np.zeros(k_shape, dtype) for _ in range(n_layers)]  # (B, H, dh, past)
        self._v = [np.zeros(v_shape, dtype) for _ in range(n_layers)]  # (B, H, past, dh)
        self.length = 0

    @staticmethod
    def _cross_kv(graph: Graph, names: list[str], features: np.ndarray) -> list[np.ndarray]:
        """Keys and values of every window. A graph quantized per call (one activation scale
        for the whole input) runs one window at a time, so windows cannot change each other."""
        feed = graph.manifest.input("features").name
        if not quantized_per_call(graph.manifest) or len(features) == 1:
            return graph.run(names, {feed: features})
        return graph.run_rows(names, feed, features)

    def logits(self, tokens: np.ndarray, positions: tuple[int, ...] = (-1,)) -> np.ndarray:
        tokens = check_tokens(tokens, self.n_rows, self.length, self.n_text_ctx)
        first = min(p % tokens.shape[1] for p in positions) if tokens.shape[1] else 0
        for start in range(0, first - PROMPT_PIECE + 1, PROMPT_PIECE):  # a long prompt in pieces
            self._step(tokens[:, start : start + PROMPT_PIECE], (-1,), None)
        done = first - first % PROMPT_PIECE
        return self._step(
            tokens[:, done:], tuple(p % tokens.shape[1] - done for p in positions), None
        )[0]

    def logits_and_attention(
        self, tokens: np.ndarray, positions: tuple[int, ...], heads: tuple[tuple[int, int], ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the ``cross_qk`` output's scores of ``heads``, which must be among the
        alignment heads the graph was exported with (see ``runtime.backend.AttentionState``)."""
        missing = [h for h in heads if tuple(h) not in self._heads]
        if self._qk is None or missing:
            raise ValueError(
                f"the decoder graph has no cross-attention output for heads "
                f"{missing or list(heads)} (it has {self._heads}); re-export it"
            )
        logits, qk = self._step(tokens, positions, self._qk)
        return logits, qk[:, [self._heads.index(tuple(h)) for h in heads]]

    def _step(
        self, tokens: np.ndarray, positions: tuple[int, ...], cross_qk: str | None
    ) -> list[np.ndarray]:
        """Run the new tokens; the logits, and the ``cross_qk`` output too when it is named."""
        tokens = check_tokens(tokens, self.n_rows, self.length, self.n_text_ctx)
        t = tokens.shape[1]
        if self._slot is not None:  # rows in slot order: slot p holds row order[p]
            order = np.argsort(self._slot)
            tokens = tokens[order]
        feeds = {self._tokens: tokens, self._positions: np.asarray(positions, dtype=np.int64)}
        for role, arrays in (("self_k", self._k), ("self_v", self._v)):
            feeds.update(zip(self._in[role], arrays))
        feeds.update(zip(self._in["cross_k"], (k for k, _ in self._cross)))
        feeds.update(zip(self._in["cross_v"], (v for _, v in self._cross)))
        out = self.decoder.run(self._out + ([cross_qk] if cross_qk else []), feeds)
        n_layers = len(self._k)
        self._k, self._v = out[1 : 1 + n_layers], out[1 + n_layers : 1 + 2 * n_layers]
        self.length += t
        results = [out[0]] + out[1 + 2 * n_layers :]
        return results if self._slot is None else [r[self._slot] for r in results]

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == self.n_rows and np.array_equal(rows, np.arange(self.n_rows)):
            return
        if len(rows) and np.all(np.diff(rows) > 0):  # rows left, the rest in order
            self._drop_rows(rows)
        else:
            self._gather(rows)
        self.n_rows = len(rows)

    def _gather(self, rows: np.ndarray) -> None:
        """Rows reordered or repeated (beam search): every array gathered, slots = rows."""
        slots = rows if self._slot is None else self._slot[rows]
        self._k = [k.take(slots, axis=0) for k in self._k]
        self._v = [v.take(slots, axis=0) for v in self._v]
        windows = self._slot_windows[slots]
        if self._cross_base is not None:  # rows of one window share its arrays until mixed
            if not np.array_equal(windows, self._slot_windows):
                self._cross = [
                    (k.take(windows, axis=0), v.take(windows, axis=0)) for k, v in self._cross_base
                ]
                self._shared = False
        else:
            self._cross = [(k.take(slots, axis=0), v.take(slots, axis=0)) for k, v in self._cross]
            self._shared = False
        self._slot_windows, self._slot = windows, None

    def _drop_rows(self, rows: np.ndarray) -> None:
        """Keep a subset of the rows, in order: survivors in slots past the new size move into
        the freed slots below it, and every array is cut to that prefix (no other copy)."""
        slots = np.arange(self.n_rows) if self._slot is None else self._slot
        kept, n = slots[rows], len(rows)
        holes = np.setdiff1d(np.arange(n), kept)
        movers = np.flatnonzero(kept >= n)
        if len(movers) and self._shared:
            self._cross_base, self._shared = None, False  # its arrays are about to be moved in
        arrays = self._k + self._v + [a for pair in self._cross for a in pair]
        for hole, mover in zip(holes, movers):
            for a in arrays:
                a[hole] = a[kept[mover]]
            self._slot_windows[hole] = self._slot_windows[kept[mover]]
            kept[mover] = hole
        self._k, self._v = [k[:n] for k in self._k], [v[:n] for v in self._v]
        self._cross = [(k[:n], v[:n]) for k, v in self._cross]
        self._slot_windows = self._slot_windows[:n]
        self._slot = None if np.array_equal(kept, np.arange(n)) else kept
