"""The encoder as graphs cut around its self-attention, which the bfloat16 kernel computes.

``derive_encoder`` makes, from an exported encoder with fused attention (one
``MultiHeadAttention`` node per layer; once, cached beside it), ``n_layers + 1`` parts: part 0
runs the convolutions and layer 0 up to its attention's query, key and value; part i finishes
layer i-1 from the kernel's context and runs layer i up to its attention; the last finishes the
last layer. Each part also hands on the residual stream its successor adds to. ``KernelEncoder``
runs them in turn with the kernel between, and answers as the encoder graph does (``Graph.run``
and ``run_rows``). An int8 encoder quantizes its activations per call inside each part, as the
whole graph did, so windows encoded one at a time stay independent of each other.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from backends.onnx.export import save_graph
from backends.onnx.kernel import SelfAttentionKernel
from backends.onnx.manifest import Manifest
from backends.onnx.sessions import Graph, run_rows
from backends.onnx.split import Located, _identity, _read

VERSION = 1  # of the derived parts: a change here makes them again
ATTENTION = "MultiHeadAttention"


def derive_encoder(encoder: Located) -> list[Located]:
    """The encoder's parts, made from the located fused encoder unless already made from this
    very file. Raises ValueError for an encoder without fused attention."""
    path, manifest = encoder
    folder, source = path.parent, path.parent / manifest.file
    stem = Path(manifest.file).stem
    stamp_path = folder / f"{stem}.split.json"
    stamp = {"version": VERSION, "source": _identity(source)}
    made = _read(stamp_path) or {}
    files = [f"{stem}.part{i}.onnx" for i in range(int(made.get("layers", 0)) + 1)]
    fresh = {k: made.get(k) for k in stamp} == stamp and len(files) > 1
    if not fresh or not all((folder / f).exists() for f in files):
        nodes, cuts = _write_parts(source, folder, stem)
        made = {**stamp, "layers": len(nodes) - 1, "nodes": nodes, "cuts": cuts}
        stamp_path.write_text(json.dumps(made))
        files = [f"{stem}.part{i}.onnx" for i in range(len(nodes))]
    located = []
    for i, (file, nodes) in enumerate(zip(files, made["nodes"])):
        details = {**manifest.details, "graph_nodes": nodes, "cut": made["cuts"][i]}
        part = dataclasses.replace(manifest, file=file, details=details)
        located.append((path.with_name(f"{Path(file).stem}.json"), part))
    return located


def attention_cuts(model: Any) -> list[dict[str, Any]]:
    """Per layer, where its self-attention is cut out: the fused node's query, key, value and
    context, its heads, and the residual stream entering the layer (the input of the layer
    norm whose output the query is projected from)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    cuts = []
    for node in model.graph.node:
        if node.op_type != ATTENTION:
            continue
        heads = next(a.i for a in node.attribute if a.name == "num_heads")
        scale = next((a.f for a in node.attribute if a.name == "scale"), 0.0)
        if scale != 1.0 or len(node.input) != 3:
            raise ValueError(f"{node.name or node.output[0]}: not the encoder's fused attention")
        residual = _residual_before(node.input[0], producer)
        q, k, v = node.input
        cuts.append(dict(q=q, k=k, v=v, context=node.output[0], heads=heads, residual=residual))
    if not cuts:
        raise ValueError(f"the encoder has no {ATTENTION} nodes: export it with fused_attention")
    return cuts


def _residual_before(name: str, producer: dict[str, Any]) -> str:
    """The input of the nearest LayerNormalization upstream of ``name`` (by first inputs)."""
    while name in producer:
        node = producer[name]
        if node.op_type == "LayerNormalization":
            return str(node.input[0])
        name = node.input[0]
    raise ValueError(f"no layer norm before {name}")


def _write_parts(source: Path, folder: Path, stem: str) -> tuple[list[int], list[dict]]:
    """The encoder cut at every layer's attention (see the module's docstring); each part's
    node count, and the names each part takes and gives."""
    import onnx  # export time only

    model = onnx.load(str(source))
    cuts = attention_cuts(model)
    named = {cut[key] for cut in cuts for key in ("q", "k", "v", "context", "residual")}
    model.graph.value_info.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        for name in sorted(named)
    )
    extractor = onnx.utils.Extractor(model)
    nodes, names = [], []
    for i in range(len(cuts) + 1):
        before = [cuts[i - 1]["context"], cuts[i - 1]["residual"]] if i else ["mel"]
        if i == len(cuts):
            after = ["features"]
        else:
            after = [cuts[i][key] for key in ("q", "k", "v", "residual")]
        part = extractor.extract_model(before, list(dict.fromkeys(after)))
        save_graph(part, folder / f"{stem}.part{i}.onnx")
        nodes.append(len(part.graph.node))
        names.append(dict(cuts[i]) if i < len(cuts) else {})
    return nodes, names


class KernelEncoder:
    """The encoder's parts and the kernel between them, run as one encoder graph."""

    def __init__(self, parts: list[Graph], manifest: Manifest, kernel: SelfAttentionKernel):
        self.parts = parts
        self.manifest = manifest
        self.kernel = kernel
        self.session = parts[0].session
        counts: Counter[str] = Counter()
        for part in parts:
            counts.update(part.placement.nodes)
        self.placement = dataclasses.replace(
            parts[0].placement, graph="encoder", nodes=dict(counts)
        )
        self._cuts = [p.manifest.details["cut"] for p in parts[:-1]]
        self._inputs = [[i.name for i in p.session.get_inputs()] for p in parts]
        self._outputs = [[o.name for o in p.session.get_outputs()] for p in parts]
        _, ctx, state = manifest.output("features").shape
        self._frame = (int(ctx), int(state))  # (T, D) of every tensor between the parts
        self._local = threading.local()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``Graph.run`` of the encoder graph: mel -> features. Between the parts, queries,
        keys, values, contexts and the residual stream are written into this thread's buffers
        (I/O binding), kept between calls: a window would otherwise allocate and free 20 of
        2.3 MB, which fragments the C heap over hours of audio."""
        (rows,) = {len(a) for a in feeds.values()}
        buffers = self._buffers(rows)
        carried = dict(feeds)
        for i, part in enumerate(self.parts):
            names, part_feeds = self._outputs[i], {n: carried[n] for n in self._inputs[i]}
            if i == len(self._cuts):
                results = dict(zip(names, part.run(names, part_feeds)))
                return [results[name] for name in outputs]
            cut = self._cuts[i]
            residual = buffers["residual"][i % 2]  # part i+1 reads it while writing the other
            into = {cut["q"]: buffers["q"], cut["k"]: buffers["k"], cut["v"]: buffers["v"]}
            into[cut["residual"]] = residual
            part.run_into(names, part_feeds, [into[n] for n in names])
            context = self.kernel(
                buffers["q"], buffers["k"], buffers["v"], cut["heads"], out=buffers["context"]
            )
            carried = {cut["context"]: context, cut["residual"]: residual}
        raise AssertionError("an encoder has a last part")

    def _buffers(self, rows: int) -> dict[str, Any]:
        """This thread's arrays between the parts for ``rows`` windows (made on first use)."""
        kept = getattr(self._local, "buffers", None)
        if kept is None or kept[0] != rows:
            shape = (rows, *self._frame)

            def new() -> np.ndarray:
                return np.empty(shape, np.float32)

            arrays = {name: new() for name in ("q", "k", "v", "context")}
            kept = self._local.buffers = (rows, {**arrays, "residual": (new(), new())})
        return kept[1]

    def run_into(
        self, outputs: list[str], feeds: dict[str, np.ndarray], into: list[np.ndarray]
    ) -> None:
        """``run``, each output copied into its array of ``into``."""
        for out, result in zip(into, self.run(outputs, feeds), strict=True):
            out[...] = result

    def run_rows(
        self,
        outputs: list[str],
        feed: str,
        rows: np.ndarray,
        into: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """``run`` one row of ``rows`` at a time (int8 graphs quantize per call), each result
        written into its slice of the batched outputs (``sessions.run_rows``)."""
        return run_rows(self, outputs, feed, rows, into)
