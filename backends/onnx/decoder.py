"""``DecoderState`` over the ``cross_kv`` and ``decoder`` graphs (``runtime.backend.DecoderState``).

Cross-attention keys and values are computed once per window by the ``cross_kv`` graph. Each
row's self-attention cache has ``n_text_ctx`` columns, of which the first ``length`` hold its
tokens so far; the decoder graph masks the rest and returns only the new keys and values, which
are written here in place, at each row's own length. Rows therefore need not have one length:
rows of another state (a window prefilled on its own) ``join`` this one and decode on from their
own positions (iteration-level batching), and a row's attention sums run over the same columns
alone or batched, so its tokens never depend on its batch mates.

Arrays hold up to ``capacity`` rows in physical slots, the first ``n_rows`` in use; ONNX Runtime
reads that prefix in place. Rows that finish leave without a gather of the survivors: the
survivors in slots past the new row count move into the holes the finished rows left. Tokens go
in and logits come out in the caller's row order.

With a binding ``device`` (``backends.onnx.binding``; the onnx option ``io_binding``), steps run
through ONNX Runtime's I/O binding and the cross-attention arrays of the rows in use are copied
to the device once per change of the rows instead of at every step.
"""

from __future__ import annotations

import numpy as np

from backends.onnx.binding import BoundStep, Device
from backends.onnx.export import quantized_per_call
from backends.onnx.sessions import Graph
from runtime.backend import check_tokens

# Tokens per decoder call while reading a long prompt: ONNX Runtime's arena keeps the largest
# buffers it ever handed out, and in one call a 223-token prompt's attention scores at B=8
# take tens of MB a layer. In 48-token pieces the arena stays small, at the same speed and text.
PROMPT_PIECE = 48


class OnnxDecoderState:
    def __init__(
        self,
        cross_kv: Graph,
        decoder: Graph,
        features: np.ndarray,
        n_text_ctx: int,
        device: Device | None = None,
        host: OnnxDecoderState | None = None,
    ) -> None:
        self.decoder = decoder
        self.device = device
        # device: steps through I/O binding, cross K/V kept there while the rows stay the same
        self._bound = (
            BoundStep(decoder.session, device, decoder.manifest.outputs)
            if device is not None
            else None
        )
        self._resident = False  # whether the bound cross K/V are the current rows'
        self.n_text_ctx = n_text_ctx
        self.cross_graph = cross_kv
        cm, dm = cross_kv.manifest, decoder.manifest
        features = np.ascontiguousarray(features, dtype=np.float32)
        self.n_rows = n = features.shape[0]
        self._slot: np.ndarray | None = None  # physical slot of each row; None: the same index
        self._most: int | None = None  # the most rows ``reserve`` said will be here at once
        self._lent: OnnxDecoderState | None = None  # ``incoming``'s state, until it joins
        # names in the decoder graph, by role and layer, from its manifest
        self._names = {role: dm.input(role).name for role in ("tokens", "lengths", "positions")}
        self._in = {
            role: [t.name for t in dm.inputs_of(role)]
            for role in ("self_k", "self_v", "cross_k", "cross_v")
        }
        self._out = (
            [dm.output("logits").name]
            + [t.name for t in dm.outputs_of("new_k")]
            + [t.name for t in dm.outputs_of("new_v")]
        )
        qk = dm.outputs_of("cross_qk")  # graphs exported before word timestamps lack it
        self._qk = qk[0].name if qk else None
        self._heads = [tuple(h) for h in dm.details.get("alignment_heads", [])]
        names = [t.name for t in cm.outputs_of("cross_k")] + [
            t.name for t in cm.outputs_of("cross_v")
        ]
        # per layer, by physical slot: self keys (H, dh, C), self values (H, C, dh), cross K, V
        self._arrays = self._host_slots(host, n) if host else self._new_self_caches(n)
        into = (self._arrays["cross_k"] + self._arrays["cross_v"]) if host else None
        out = self._cross_kv(cross_kv, names, features, into)
        self._arrays["cross_k"], self._arrays["cross_v"] = (
            out[: len(out) // 2],
            out[len(out) // 2 :],
        )
        self._lengths = np.zeros(n, np.int64)  # tokens in each slot's cache
        self._windows = np.arange(n)  # the window of each slot: rows of one share cross arrays

    def _new_self_caches(self, n: int) -> dict[str, list[np.ndarray]]:
        """Zeroed self-attention caches for ``n`` rows (the cross K/V come from the graph)."""
        dm = self.decoder.manifest
        arrays: dict[str, list[np.ndarray]] = {}
        for role in ("self_k", "self_v"):
            specs = dm.inputs_of(role)
            shapes = [(n, *(int(d) for d in t.shape[1:])) for t in specs]
            arrays[role] = [np.zeros(shape, np.dtype(t.dtype)) for shape, t in zip(shapes, specs)]
        return arrays

    @staticmethod
    def _host_slots(host: OnnxDecoderState, n: int) -> dict[str, list[np.ndarray]]:
        """Views of ``host``'s ``n`` slots after its rows (made room for): rows prefilled there
        join it without a copy. Masked columns of a slot a row left hold that row's finite
        values, which weigh exactly 0 in the new row's attention."""
        host._reserve(host.n_rows + n)
        at = host.n_rows
        return {role: [a[at : at + n] for a in arrays] for role, arrays in host._arrays.items()}

    def incoming(self, features: np.ndarray) -> OnnxDecoderState:
        """A state for new rows of ``features`` to prefill, then ``join`` this one: it lives in
        this state's free slots, so their cross-attention keys and values are written once, where
        they stay (18 MB a row for tiny), rather than computed aside and copied in."""
        if self._lent is not None and self._lent.n_rows:
            raise RuntimeError("join the rows of the last incoming() state before asking another")
        self._lent = OnnxDecoderState(
            self.cross_graph, self.decoder, features, self.n_text_ctx, self.device, host=self
        )
        return self._lent

    @staticmethod
    def _cross_kv(
        graph: Graph, names: list[str], features: np.ndarray, into: list[np.ndarray] | None
    ) -> list[np.ndarray]:
        """Keys and values of every window, written ``into`` arrays when given. A graph
        quantized per call (one activation scale for the whole input) runs one window at a
        time, so windows cannot change each other."""
        feed = graph.manifest.input("features").name
        if quantized_per_call(graph.manifest) and len(features) > 1:
            return graph.run_rows(names, feed, features, into)
        if into is None:
            return graph.run(names, {feed: features})
        graph.run_into(names, {feed: features}, into)
        return into

    @property
    def capacity(self) -> int:
        return len(self._lengths)

    @property
    def length(self) -> int:
        """The longest row's tokens so far."""
        return int(self._lengths[: self.n_rows].max()) if self.n_rows else 0

    @property
    def lengths(self) -> np.ndarray:
        """Each row's tokens so far, in row order."""
        used = self._lengths[: self.n_rows]
        return used.copy() if self._slot is None else used[self._slot]

    def logits(self, tokens: np.ndarray, positions: tuple[int, ...] = (-1,)) -> np.ndarray:
        tokens = check_tokens(tokens, self.n_rows, self.length, self.n_text_ctx)
        first = min(p % tokens.shape[1] for p in positions) if tokens.shape[1] else 0
        for start in range(0, first - PROMPT_PIECE + 1, PROMPT_PIECE):  # a long prompt in pieces
            # no logits for a piece (none are read): about 0.7 ms of projection each
            self._step(tokens[:, start : start + PROMPT_PIECE], (), None)
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
        n, t = self.n_rows, tokens.shape[1]
        if self._slot is not None:  # rows in slot order: slot p holds row order[p]
            tokens = tokens[np.argsort(self._slot)]
        feeds = {
            self._names["tokens"]: tokens,
            self._names["lengths"]: self._lengths[:n],
            self._names["positions"]: np.asarray(positions, dtype=np.int64),
        }
        dims = {"batch": n, "tokens": t, "positions": len(positions)}
        out = self._run(self._out + ([cross_qk] if cross_qk else []), feeds, dims)
        n_layers = len(self._in["self_k"])
        self._write(out[1 : 1 + n_layers], out[1 + n_layers : 1 + 2 * n_layers], t)
        results = [out[0]] + out[1 + 2 * n_layers :]
        return results if self._slot is None else [r[self._slot] for r in results]

    def _run(
        self, outputs: list[str], feeds: dict[str, np.ndarray], dims: dict[str, int]
    ) -> list[np.ndarray]:
        """The decoder graph on ``feeds`` and the caches of the rows in use. Bound, the cross
        K/V are bound once per change of the rows (``join``, ``keep``) rather than every step,
        and so are the self caches where the device reads host memory (the CPU: ``_write``
        updates them in place)."""
        n = self.n_rows
        bound = self._bound
        resident: tuple[str, ...] = ("cross_k", "cross_v") if bound else ()
        if bound and bound.device.kind == "cpu":
            resident = tuple(self._in)
        for role in self._in:
            if role not in resident:
                feeds.update(zip(self._in[role], (a[:n] for a in self._arrays[role])))
        if bound is None:
            return self.decoder.run(outputs, feeds)
        if not self._resident:
            arrays: dict[str, np.ndarray] = {}
            for role in resident:
                arrays.update(zip(self._in[role], (a[:n] for a in self._arrays[role])))
            bound.keep_resident(arrays)
            self._resident = True
        return bound.run(outputs, feeds, dims)

    def _write(self, new_k: list[np.ndarray], new_v: list[np.ndarray], t: int) -> None:
        """The new keys and values into each slot's cache at its length (in place)."""
        n = self.n_rows
        starts = self._lengths[:n]
        if t == 1:  # a decoding step: one column per row, wherever each row is
            slots = np.arange(n)
            for k, new in zip(self._arrays["self_k"], new_k):
                k[slots, :, :, starts] = new[:, :, :, 0]
            for v, new in zip(self._arrays["self_v"], new_v):
                v[slots, :, starts, :] = new[:, :, 0, :]
        else:  # a prompt: rows of one length at once, else row by row
            groups = [(0, n)] if np.all(starts == starts[0]) else [(s, s + 1) for s in range(n)]
            for lo, hi in groups:
                at = int(starts[lo])
                for k, new in zip(self._arrays["self_k"], new_k):
                    k[lo:hi, :, :, at : at + t] = new[lo:hi]
                for v, new in zip(self._arrays["self_v"], new_v):
                    v[lo:hi, :, at : at + t, :] = new[lo:hi]
        self._lengths[:n] += t

    # -- rows joining and leaving -----------------------------------------------------------
    def join(self, other: OnnxDecoderState) -> None:
        """Append ``other``'s rows (in its row order) after this state's rows, each with its
        own length and cross-attention keys and values; ``other`` is spent."""
        if other.n_rows == 0:
            return
        self._resident = False
        n, m = self.n_rows, other.n_rows
        self._reserve(n + m)
        order = other._physical()
        for role, arrays in self._arrays.items():
            for mine, theirs in zip(arrays, other._arrays[role]):
                if not _in_place(theirs, mine[n : n + m], order):  # made by ``incoming``
                    mine[n : n + m] = theirs[order]
        self._lengths[n : n + m] = other._lengths[order]
        first = int(self._windows[:n].max()) + 1 if n else 0
        self._windows[n : n + m] = first + other._windows[order]
        if self._slot is not None:
            self._slot = np.concatenate([self._slot, np.arange(n, n + m)])
        self.n_rows = n + m
        other.n_rows = 0
        if other is self._lent:
            self._lent = None

    def reserve(self, rows: int) -> None:
        """At most ``rows`` rows will be here at once: the arrays grow (doubling) up to that as
        rows join, not at once (a one-window file needs 1 row's 24 MB, not a batch's)."""
        self._most = max(rows, self.capacity)

    def _reserve(self, rows: int) -> None:
        if rows <= self.capacity:
            return
        self._resident = False  # new arrays
        doubled = 2 * self.capacity if self._most is None else min(2 * self.capacity, self._most)
        size = max(rows, doubled)
        for arrays in self._arrays.values():
            for i, a in enumerate(arrays):
                grown = np.zeros((size, *a.shape[1:]), a.dtype)  # finite where masked
                grown[: self.n_rows] = a[: self.n_rows]
                arrays[i] = grown
        for name in ("_lengths", "_windows"):
            grown_ids = np.zeros(size, np.int64)
            grown_ids[: self.n_rows] = getattr(self, name)[: self.n_rows]
            setattr(self, name, grown_ids)

    def _physical(self) -> np.ndarray:
        """The slot of each row, in row order."""
        return np.arange(self.n_rows) if self._slot is None else self._slot

    def keep(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == self.n_rows and np.array_equal(rows, np.arange(self.n_rows)):
            return
        self._resident = False
        if len(rows) == 0:  # every row left: keep the arrays for the rows that join next
            self._slot = None
        elif np.all(np.diff(rows) > 0):  # rows left, the rest in order
            self._drop_rows(rows)
        else:
            self._gather(rows)
        self.n_rows = len(rows)

    def _gather(self, rows: np.ndarray) -> None:
        """Rows reordered or repeated (beam search): the used columns of every cache gathered
        into new arrays, slots = rows; the cross-attention arrays too, unless each new slot keeps
        the window it had (beam search within its groups)."""
        slots = self._physical()[rows]
        used = max(int(self._lengths[slots].max()) if len(slots) else 0, 1)
        windows = self._windows[slots]
        same_windows = np.array_equal(windows, self._windows[: len(slots)])
        for role, arrays in self._arrays.items():
            if role.startswith("cross") and same_windows:
                continue
            for i, a in enumerate(arrays):
                if role == "self_k":
                    b = np.zeros((len(slots), *a.shape[1:]), a.dtype)
                    b[..., :used] = a[slots, :, :, :used]
                elif role == "self_v":
                    b = np.zeros((len(slots), *a.shape[1:]), a.dtype)
                    b[:, :, :used] = a[slots, :, :used]
                else:
                    b = a.take(slots, axis=0)
                arrays[i] = b
        self._lengths, self._windows = self._lengths[slots], windows
        self._slot = None

    def _drop_rows(self, rows: np.ndarray) -> None:
        """Keep a subset of the rows, in order: survivors in slots past the new row count move
        into the freed slots below it (no other copy)."""
        kept, n = self._physical()[rows], len(rows)
        holes = np.setdiff1d(np.arange(n), kept)
        movers = np.flatnonzero(kept >= n)
        arrays = [a for group in self._arrays.values() for a in group]
        arrays += [self._lengths, self._windows]
        for hole, mover in zip(holes, movers):
            for a in arrays:
                a[hole] = a[kept[mover]]
            kept[mover] = hole
        self._slot = None if np.array_equal(kept, np.arange(n)) else kept


def _in_place(theirs: np.ndarray, slots: np.ndarray, order: np.ndarray) -> bool:
    """Whether ``theirs`` in ``order`` already is ``slots`` (the same memory, rows in order)."""
    return (
        theirs.shape == slots.shape
        and theirs.ctypes.data == slots.ctypes.data
        and bool(np.array_equal(order, np.arange(len(order))))
    )
