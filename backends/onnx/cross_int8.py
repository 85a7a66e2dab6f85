"""The ``cross_kv`` graph's keys and values kept as int8, for the cross-attention kernel.

A decoder step with the kernel is bound by reading every row's cross-attention keys and values
(``kernel.py``); int8 halves float16's read again and the memory that holds them (9.2 → 4.9 MB
a row for tiny.en). ``Int8CrossKV`` stands in for the ``cross_kv`` graph: the exported graph
writes a window's float32 arrays into scratch kept per thread, and ``kernel.CrossQuantizer``
packs them, with one scale per key and value row of a head (the keys in the kernel's panels),
into the arrays the decoder state holds. The state moves those arrays between slots as it moved
the float16 ones: it never reads them.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from backends.onnx.kernel import CrossQuantizer, kept
from backends.onnx.manifest import Manifest, TensorSpec
from backends.onnx.sessions import Graph, run_rows

ROLES = ("cross_k", "cross_v")


def int8_specs(specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """The exported graphs' cross-attention specs as int8 ones, others as they are."""
    return tuple(
        dataclasses.replace(t, dtype="int8", shape=CrossQuantizer.shape(t.role, t.shape))
        if t.role in ROLES
        else t
        for t in specs
    )


class Int8CrossKV:
    """``Graph`` of the exported ``cross_kv`` whose outputs come out int8 (see the module)."""

    def __init__(self, graph: Graph, quantizer: CrossQuantizer) -> None:
        self.graph = graph
        self.session = graph.session
        self.placement = graph.placement
        self.manifest: Manifest = dataclasses.replace(
            graph.manifest, outputs=int8_specs(graph.manifest.outputs)
        )
        self._quantize = quantizer
        self._roles = {t.name: t.role for t in graph.manifest.outputs}
        self._shapes = {t.name: tuple(int(d) for d in t.shape[1:]) for t in graph.manifest.outputs}
        self._local = threading.local()  # each thread's float32 scratch, kept between windows

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        wide = self.graph.run(outputs, feeds)
        return [
            self._quantize(self._roles[name], np.ascontiguousarray(array))
            for name, array in zip(outputs, wide)
        ]

    def run_into(
        self, outputs: list[str], feeds: dict[str, np.ndarray], into: list[np.ndarray]
    ) -> None:
        """``Graph.run_into``: the float32 arrays into scratch, then packed ``into``."""
        wide = self._scratch([(len(a), *self._shapes[name]) for name, a in zip(outputs, into)])
        self.graph.run_into(outputs, feeds, wide)
        for name, array, out in zip(outputs, wide, into):
            self._quantize(self._roles[name], array, out)

    def run_rows(
        self, outputs: list[str], feed: str, rows: np.ndarray, into: list[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        return run_rows(self, outputs, feed, rows, into)

    def _scratch(self, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """Contiguous float32 arrays of ``shapes`` in this thread's buffer (grown when short)."""
        sizes = [int(np.prod(s)) for s in shapes]
        buffer = kept(self._local, sum(sizes), np.float32)
        ends = np.cumsum(sizes)
        return [buffer[end - size : end].reshape(s) for s, size, end in zip(shapes, sizes, ends)]
