"""The decoder as graphs cut around its cross-attention, which this project's kernel computes.

``derive`` makes, from the exported ``cross_kv`` and ``decoder`` graphs (once, cached beside
them): a ``cross_kv`` whose keys and values are float16, the keys in the kernel's panels of 16
(B, H, ceil(S/16), dh, 16), computed in the graph so a joining row's are written once where
they stay; and the decoder cut at every layer's cross-attention into ``n_layers + 1`` parts:
part 0 runs layer 0 up to its cross-attention query, part i finishes layer i-1 from the
kernel's context and runs layer i up to its query, the last finishes the last layer and the
logits. ``KernelDecoder`` runs them in turn with the kernel between, and answers as the decoder
graph does (``Graph.run``), so ``OnnxDecoderState`` uses it unchanged. Four more session calls a
step cost about 0.3 ms; the kernel saves about 2.4 ms of an 8-row step on tiny.en.

With the int8 logits kernel (``derive(..., logits=True)``), the last part stops at the final
layer norm and the kernel projects onto the vocabulary from panels saved beside the parts, and
part 0 takes the embedded tokens, which ``embed_tokens`` reads from the same panels: the tied
int8 table is held once (22 MB for tiny) instead of in two sessions.

Part 0 also makes the self-attention masks that every later part takes. A prompt's pieces
compute no logits: their last layer runs a part of its own that stops at its keys and values
(``part{n-1}.kv``), and neither its cross-attention nor the last part runs. With
``cross_kv_int8`` the exported ``cross_kv`` stands in for the float16 one
(``backends.onnx.cross_int8``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from backends.onnx.export import save_graph
from backends.onnx.kernel import PANEL, CrossAttentionKernel, LogitsKernel, to_logit_panels
from backends.onnx.manifest import Manifest, TensorSpec
from backends.onnx.sessions import Graph

VERSION = 5  # of the derived graphs: a change here makes them again
# the self-attention masks (``graphs._masks``): made once, by part 0, for every later part
MASKS = ("dec.cache_mask", "dec.causal")
Located = tuple[Path, Manifest]  # a manifest's path and the manifest


def derive(cross: Located, decoder: Located, logits: bool = False) -> tuple[Located, list[Located]]:
    """The float16 ``cross_kv`` and the decoder's parts, made from the located graphs unless
    already made from these very files. ``logits``: the last part stops before an int8
    ``MatMulNBits`` logits projection, whose weights are saved as the logits kernel's panels
    (its manifest's ``logits_from`` and ``logit_panels`` say so; a float graph keeps its own),
    and where the token embedding is read from the same int8 blocks, part 0 takes the
    embedded tokens (``embedded_from``): one copy of the table, not two."""
    (cross_path, cross_m), (dec_path, dec_m) = cross, decoder
    folder = cross_path.parent
    sources = [folder / cross_m.file, dec_path.parent / dec_m.file]
    stem, tag = Path(dec_m.file).stem, ".hidden" if logits else ""  # both can be cached
    stamp_path = folder / f"{stem}{tag}.split.json"
    stamp = {"version": VERSION, "sources": [_identity(p) for p in sources], "logits": logits}
    n_layers = len(dec_m.inputs_of("cross_k"))
    files = [f"{Path(cross_m.file).stem}.fp16.onnx"]
    ends = (0, n_layers)  # the parts the logits kernel changes: named apart
    files += [f"{stem}.part{i}{tag if i in ends else ''}.onnx" for i in range(n_layers + 1)]
    files.append(f"{stem}.part{n_layers - 1}.kv.onnx")  # the last layer's keys and values alone
    panels = [f"{stem}.logits-weights.npy", f"{stem}.logits-scales.npy"]
    made = _read(stamp_path) or {}
    wanted = files + (panels if made.get("hidden") else [])
    if {k: made.get(k) for k in stamp} != stamp or not all((folder / f).exists() for f in wanted):
        nodes = [_write_fp16_cross(sources[0], folder / files[0])]
        targets = [folder / f for f in files[1:]]
        part_nodes, hidden, embedded = _write_parts(sources[1], n_layers, targets, logits)
        made = {**stamp, "nodes": nodes + part_nodes, "hidden": hidden, "embedded": embedded}
        stamp_path.write_text(json.dumps(made))
    nodes = made["nodes"]
    fp16_cross = _derived(cross_m, files[0], nodes[0], fp16_outputs=True)
    parts = [_derived(dec_m, f, n) for f, n in zip(files[1:], nodes[1:])]
    if made.get("hidden"):  # the last part (the keys-and-values part comes after it)
        details = {**parts[n_layers].details, "logits_from": made["hidden"], "logit_panels": panels}
        parts[n_layers] = dataclasses.replace(parts[n_layers], details=details)
    if made.get("embedded"):
        details = {**parts[0].details, "embedded_from": made["embedded"]}
        parts[0] = dataclasses.replace(parts[0], details=details)
    located = [(dec_path.with_name(f"{Path(p.file).stem}.json"), p) for p in parts]
    return (cross_path.with_name(f"{Path(files[0]).stem}.json"), fp16_cross), located


def _derived(manifest: Manifest, file: str, nodes: int, fp16_outputs: bool = False) -> Manifest:
    """``manifest`` for a derived graph: its file, its node count (placement), and float16
    cross-attention outputs for the float16 ``cross_kv``."""
    outputs = tuple(_fp16(t) for t in manifest.outputs) if fp16_outputs else manifest.outputs
    details = {**manifest.details, "graph_nodes": nodes}
    return dataclasses.replace(manifest, file=file, details=details, outputs=outputs)


def cross_attention_cut(i: int) -> tuple[str, str, str]:
    """Where layer ``i``'s cross-attention is cut out of the decoder graph: the residual stream
    before it, its scaled query heads (B, H, T, dh) and its context (B, H, T, dh), as
    ``graphs._decoder_layer`` names them (``derive`` checks that they are there)."""
    p = f"decoder.blocks.{i}"
    return f"{p}/attn_res", f"{p}.cross_attn.q/heads", f"{p}.cross_attn/context"


def kernel_manifest(decoder: Manifest) -> Manifest:
    """The decoder's manifest as ``KernelDecoder`` answers to it: float16 cross keys (in
    panels) and values."""
    return dataclasses.replace(decoder, inputs=tuple(_fp16(t) for t in decoder.inputs))


def _fp16(spec: TensorSpec) -> TensorSpec:
    if spec.role == "cross_k":  # (B, H, dh, S) -> panels (B, H, ceil(S/16), dh, 16)
        b, h, dh, s = spec.shape
        panels = -(-int(s) // PANEL)
        return dataclasses.replace(spec, dtype="float16", shape=(b, h, panels, dh, PANEL))
    if spec.role == "cross_v":
        return dataclasses.replace(spec, dtype="float16")
    return spec


def _identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_fp16_cross(source: Path, target: Path) -> int:
    """``cross_kv`` with each output cast to float16 in the graph, the keys as panels; its
    node count."""
    import onnx  # export time only
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    for out in graph.output:
        name, wide = out.name, f"{out.name}/fp32"
        for node in graph.node:
            node.output[:] = [wide if o == name else o for o in node.output]
        dims = out.type.tensor_type.shape.dim
        half = f"{name}/fp16" if name.startswith("cross_k") else name
        graph.node.append(helper.make_node("Cast", [wide], [half], to=TensorProto.FLOAT16))
        if name.startswith("cross_k"):
            dh, s = dims[2].dim_value, dims[3].dim_value
            panels = -(-s // PANEL)
            pads = numpy_helper.from_array(
                np.array([0, 0, 0, 0, 0, 0, 0, panels * PANEL - s], np.int64), f"{name}/pads"
            )
            shape = numpy_helper.from_array(
                np.array([0, 0, dh, panels, PANEL], np.int64), f"{name}/panel_shape"
            )
            graph.initializer.extend([pads, shape])
            graph.node.extend(
                [
                    helper.make_node("Pad", [half, pads.name], [f"{name}/padded"]),
                    helper.make_node("Reshape", [f"{name}/padded", shape.name], [f"{name}/panels"]),
                    helper.make_node("Transpose", [f"{name}/panels"], [name], perm=[0, 1, 3, 2, 4]),
                ]
            )
        out.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT16, None))
    save_graph(model, target)
    return len(graph.node)


def _write_parts(
    source: Path, n_layers: int, targets: list[Path], logits: bool
) -> tuple[list[int], str | None, str | None]:
    """The decoder cut at every layer's cross-attention (see the module's docstring), and the
    last layer's part up to its keys and values only (``KernelDecoder.run`` of a prompt's
    piece); each part's node count, the logits projection's input where the last part stops
    before it (``logits`` and an 8-bit ``MatMulNBits`` in blocks of 32: its panels are saved
    beside), and the embedded tokens where part 0 takes them instead of its own copy."""
    import onnx  # export time only
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    cuts = [name for i in range(n_layers) for name in cross_attention_cut(i)] + list(MASKS)
    model.graph.value_info.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in cuts
    )
    produced = {o for node in model.graph.node for o in node.output}
    missing = [name for name in cuts if name not in produced]
    if missing:
        raise ValueError(f"{source.name} has no {missing[0]}: export the decoder again")
    hidden, embedded = _save_logit_panels(model, targets[-1]) if logits else (None, None)
    extractor = onnx.utils.Extractor(model)
    nodes = []
    for i, target in enumerate(targets):
        kv_only = i == n_layers + 1  # a prompt's piece: its last layer's keys and values
        i = n_layers - 1 if kv_only else i
        before = list(cross_attention_cut(i - 1)[::2]) if i else []  # residual, context
        if i == n_layers:
            inputs, outputs = ["positions", *before], [hidden or "logits"]
        else:
            # part 0 makes the self-attention masks from these; the later parts take its masks
            masks = ["tokens", "lengths", "self_v.0"] if i == 0 else list(MASKS)
            inputs = [*masks, *before, f"self_k.{i}", f"self_v.{i}"]
            if i == 0 and embedded:
                inputs.append(embedded)
            outputs = [*cross_attention_cut(i)[:2], f"new_k.{i}", f"new_v.{i}"]
            outputs += list(MASKS) if i == 0 else []
            outputs = outputs[2:4] if kv_only else outputs
        part = extractor.extract_model(list(dict.fromkeys(inputs)), outputs)
        save_graph(part, target)
        nodes.append(len(part.graph.node))
    return nodes, hidden, embedded


def _save_logit_panels(model: Any, last: Path) -> tuple[str | None, str | None]:
    """The logits projection's weights as the logits kernel's panels, saved beside ``last``
    (``<stem>.logits-weights.npy`` and ``-scales.npy`` of the decoder); its input's name, and
    the embedded tokens' name where the token embedding gathers from the same blocks. Nones
    where the projection is not an 8-bit ``MatMulNBits`` in blocks of 32 without zero points."""
    from onnx import TensorProto, helper, numpy_helper

    node = next((n for n in model.graph.node if "logits" in n.output), None)
    if node is None or node.op_type != "MatMulNBits" or len(node.input) != 3:
        return None, None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("bits") != 8 or attributes.get("block_size") != 32:
        return None, None
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q8, scales = (arrays[name] for name in node.input[1:])
    stem = last.name.split(".part")[0]
    for suffix, array in zip(("weights", "scales"), to_logit_panels(q8, scales)):
        target = last.with_name(f"{stem}.logits-{suffix}.npy")
        with open(target.with_suffix(".tmp"), "wb") as f:
            np.save(f, array)
        os.replace(target.with_suffix(".tmp"), target)  # whole or not at all
    embedded = _tied_embedding(model, node.input[1], scales, arrays)
    model.graph.value_info.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in (node.input[0], embedded)
        if name
    )
    return str(node.input[0]), embedded


def _tied_embedding(
    model: Any, q8: str, scales: np.ndarray, arrays: dict[str, np.ndarray]
) -> str | None:
    """The (B, T, D) embedded tokens where ``blockwise.gather_tied`` reads them from the
    projection's int8 blocks ``q8`` with the same scales (``embed_tokens`` computes them from
    the panels exactly so); else None."""
    from onnx import helper

    consumers = {i: n for n in model.graph.node for i in n.input}
    for node in model.graph.node:
        if node.op_type != "GatherBlockQuantized" or node.input[0] != q8 or len(node.input) != 3:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        same = np.array_equal(arrays[node.input[2]].reshape(-1), scales)
        reshape = consumers.get(node.output[0])
        if same and attributes.get("block_size") == 32 and reshape is not None:
            return str(reshape.output[0]) if reshape.op_type == "Reshape" else None
    return None


def embed_tokens(tokens: np.ndarray, panels: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(B, T) token ids -> their int8 embedding rows dequantized, (B, T, K) float32, read
    from the logits kernel's panels (``kernel.to_logit_panels``) as ``GatherBlockQuantized``
    reads the tied table: (q - 128) * scale per block of 32."""
    column, lane = np.divmod(tokens, 16)
    blocks = panels[column, :, :, lane, :]  # (B, T, K/32, 8, 4)
    rows = blocks.reshape(*tokens.shape, scales.shape[1], 32).astype(np.float32) - 128.0
    return (rows * scales[column, :, lane][..., None]).reshape(*tokens.shape, -1)


class KernelDecoder:
    """The decoder's parts and the kernel between them, run as one decoder graph."""

    def __init__(
        self,
        parts: list[Graph],
        manifest: Manifest,
        kernel: CrossAttentionKernel,
        logits: tuple[LogitsKernel, np.ndarray, np.ndarray] | None = None,
    ):
        """``parts``: as ``derive`` makes them, the last layer's keys-and-values part last.
        ``logits``: the logits kernel and its panels, where the last part stops before the
        projection (its manifest's ``logits_from``)."""
        parts, self._kv_part = parts[:-1], parts[-1]
        self.parts = parts
        self.manifest = manifest
        self.kernel = kernel
        self.session = parts[0].session  # where steps run (the CPU): for ``binding_device``
        counts: Counter[str] = Counter()
        for part in parts:
            counts.update(part.placement.nodes)
        self.placement = dataclasses.replace(
            parts[0].placement, graph="decoder", nodes=dict(counts)
        )
        self._io = {  # each part's input and output names
            id(p): (
                [i.name for i in p.session.get_inputs()],
                [o.name for o in p.session.get_outputs()],
            )
            for p in [*parts, self._kv_part]
        }
        self._heads = [tuple(h) for h in manifest.details.get("alignment_heads", [])]
        self._logits = logits
        self._vocab = int(manifest.output("logits").shape[-1])
        self._positions = manifest.input("positions").name
        # part 0 takes the embedded tokens where it was cut for the logits kernel's panels
        self._embedded = parts[0].manifest.details.get("embedded_from") if logits else None

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``Graph.run`` of the decoder graph: logits, new keys and values, ``cross_qk``."""
        values: dict[str, np.ndarray] = {}
        scores: list[np.ndarray] = []
        want_scores = "cross_qk" in outputs  # word timestamps: else the softmax in scratch
        carried: dict[str, np.ndarray] = {}
        parts = list(self.parts)
        if not want_scores and feeds[self._positions].size == 0:
            # a prompt's piece (no logits): past the last layer's keys and values, everything
            # feeds only the logits, so its part stops there and the last part is not run
            values["logits"] = np.zeros((len(feeds["tokens"]), 0, self._vocab), np.float32)
            parts[-2:] = [self._kv_part]
        last = len(parts) - 1
        if self._embedded and self._logits is not None:
            _, panels, block_scales = self._logits
            carried = {self._embedded: embed_tokens(feeds["tokens"], panels, block_scales)}
        masks: dict[str, np.ndarray] = {}
        for i, part in enumerate(parts):
            given = {**feeds, **masks, **carried}
            inputs, names = self._io[id(part)]
            results = dict(zip(names, part.run(names, {n: given[n] for n in inputs})))
            masks.update((n, results[n]) for n in MASKS if n in results)
            if i == len(self.parts) - 1:
                values["logits"] = self._project(results)
                break
            residual, query, context = cross_attention_cut(i)
            for role in ("new_k", "new_v"):
                values[f"{role}.{i}"] = results[f"{role}.{i}"]
            if i == last:
                break
            ctx, layer_scores = self.kernel(
                results[query], feeds[f"cross_k.{i}"], feeds[f"cross_v.{i}"], want_scores
            )
            carried = {residual: results[residual], context: ctx}
            if layer_scores is not None:
                scores.append(layer_scores)
        if "cross_qk" in outputs:
            values["cross_qk"] = np.concatenate(
                [scores[layer][:, head : head + 1] for layer, head in self._heads], axis=1
            )
        return [values[name] for name in outputs]

    def _project(self, results: dict[str, np.ndarray]) -> np.ndarray:
        """The logits: the last part's, or the kernel's from the hidden state it stops at."""
        if self._logits is None:
            return results["logits"]
        kernel, panels, scales = self._logits
        (hidden,) = results.values()
        return kernel(hidden, panels, scales, self._vocab)
