"""Export graphs to files with their manifests, and the on-disk cache the backend exports into.

Graphs are keyed by the weights' hash, so a changed model never reuses a stale graph::

    $WHISPER_RUNTIME_ONNX_CACHE                       (or $XDG_CACHE_HOME/whisper-runtime/onnx,
      <model name>-<WhisperModel.digest()>/              or ~/.cache/whisper-runtime/onnx)
        encoder-fp32-b1.onnx  encoder-fp32-b1.json    (static batch 1)
        encoder-int8-dyn.onnx encoder-int8-dyn.json   (any batch)
        cross_kv-fp32.onnx ... decoder-int8.onnx ...

int8 encoder and cross_kv graphs are ONNX Runtime's dynamic quantization of the fp32 graph
(``quantize_dynamic``: MatMul weights to int8, activations quantized per call), which is what its
CPU kernels accelerate with AVX-512 VNNI / AVX2; they run one window per call
(``quantized_per_call``). The int8 decoder uses ``MatMulNBits`` instead
(``backends.onnx.blockwise``): activations quantized per row, so a row's tokens do not depend on
the rows batched with it. bf16 is not a graph of its own: providers that compute in BF16
(VitisAI on XDNA2) are given the fp32 graph and convert it themselves.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from backends.onnx import blockwise
from backends.onnx.manifest import GRAPHS, Manifest
from runtime.cache import cache_dir
from runtime.model.weights import WhisperModel

CACHE_ENV = "WHISPER_RUNTIME_ONNX_CACHE"
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
GRAPH_DTYPES = {"fp32": np.float32, "fp16": np.float16, "int8": np.float32, "bf16": np.float32}
EXTERNAL_DATA_BYTES = 1 << 30  # protobuf files stop at 2 GiB: bigger weights go to a .data file
# Per-channel weight scales: as fast as per-tensor here, and closer to fp32 (LibriSpeech subset,
# tiny.en: +0.29 WER points over fp32 against +0.50 per-tensor; tools/bench_onnx.py).
QUANTIZATION: dict[str, Any] = {  # a manifest detail (JSON)
    "method": "onnxruntime.quantization.quantize_dynamic",
    "op_types": ["MatMul"],
    "weight_type": "QInt8",
    "per_channel": True,
    "MatMulConstBOnly": True,
}
# The encoder variant whose self-attention is ONNX Runtime's fused contrib op (manifest detail).
FUSED = "com.microsoft.MultiHeadAttention"
# Bump when graphs change shape or meaning, so caches written by an older exporter are rebuilt.
EXPORTER = "whisper-runtime onnx exporter 3"  # 3: rows of different lengths (lengths input)
# int8 as MatMulNBits, rows independent of each other. Not cross_kv: MatMulNBits is 3x slower
# than quantize_dynamic's kernel at its 1500 rows per window, so it runs one window per call.
BLOCKWISE_GRAPHS = ("decoder",)
# The decoder's token embedding (gathered) and its transpose, the output projection (a MatMul)
TIED_EMBEDDING = ("decoder.token_embedding.weight", "decoder.token_embedding.weight_t")


def quantization_detail(graph: str, precision: str) -> dict[str, Any] | None:
    """What a graph's manifest says of its quantization (checked when reusing a cache)."""
    if precision != "int8":
        return None
    if graph in BLOCKWISE_GRAPHS and blockwise.supported():
        return blockwise.DETAIL
    return QUANTIZATION


def quantized_per_call(manifest: Manifest) -> bool:
    """Whether the graph quantizes its activations with one scale per call: such a graph must
    run one window per call, or windows batched together change each other's results."""
    return manifest.details.get("quantization") == QUANTIZATION


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where exported graphs are cached: ``override``, $WHISPER_RUNTIME_ONNX_CACHE, or the
    user cache directory (XDG_CACHE_HOME, else ~/.cache) under whisper-runtime/onnx."""
    if override:
        return Path(os.path.expandvars(os.fspath(override))).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return cache_dir("onnx")


def model_folder(root: Path, model: WhisperModel) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model.name) or "model"
    return root / f"{safe}-{model.digest()}"


def graph_precision(precision: str) -> str:
    """The precision of the graph file for a requested precision (bf16 is given as fp32)."""
    return "fp32" if precision == "bf16" else precision


def graph_stem(graph: str, precision: str, batch: int | None, fused: bool = False) -> str:
    """File stem of one graph: ``encoder-int8-b4``, ``encoder-fp32-dyn``, ``decoder-fp32``;
    ``-mha`` for an encoder with fused attention (``fused``)."""
    precision = graph_precision(precision)
    if graph != "encoder":
        return f"{graph}-{precision}" + (f"-b{batch}" if batch else "")
    return f"encoder-{precision}-" + (f"b{batch}" if batch else "dyn") + ("-mha" if fused else "")


def ensure_graph(
    model: WhisperModel,
    graph: str,
    precision: str,
    batch: int | None,
    folder: Path,
    fused: bool = False,
) -> tuple[Path, Manifest]:
    """The graph's manifest path and manifest in ``folder``, exporting it first when absent,
    built from other weights, or written by another exporter version or quantization."""
    fused = fused and graph == "encoder"
    path = folder / f"{graph_stem(graph, precision, batch, fused)}.json"
    if path.exists():
        manifest = Manifest.read(path)
        if _is_current(manifest, model, precision, fused) and (folder / manifest.file).exists():
            return path, manifest
    return path, export_graph(model, graph, precision, batch, folder, fused)


def _is_current(
    manifest: Manifest, model: WhisperModel, precision: str, fused: bool = False
) -> bool:
    details = manifest.details
    return (
        manifest.model_digest == model.digest()
        and details.get("exporter") == EXPORTER
        and details.get("quantization") == quantization_detail(manifest.graph, precision)
        and details.get("alignment_heads") == _heads_detail(manifest.graph, model)
        and details.get("attention") == (FUSED if fused else None)
    )


def _heads_detail(graph: str, model: WhisperModel) -> list[list[int]] | None:
    """The decoder's ``cross_qk`` output holds these (layer, head) pairs, in this order; a
    decoder exported before it had that output (or with other heads) is exported again."""
    if graph != "decoder":
        return None
    return [list(pair) for pair in model.word_alignment_heads()]


def export_graph(
    model: WhisperModel,
    graph: str,
    precision: str,
    batch: int | None,
    folder: Path,
    fused: bool = False,
) -> Manifest:
    """Build one graph from the in-memory weights, write ``<stem>.onnx`` and ``<stem>.json``;
    ``fused``: the encoder's self-attention as ONNX Runtime's MultiHeadAttention."""
    import onnx  # 0.6 s to import (ml_dtypes): only here, never on a cached model's path

    from backends.onnx.graphs import BUILDERS

    if graph not in GRAPHS:
        raise ValueError(f"unknown graph {graph!r}; one of {', '.join(GRAPHS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"onnx precisions are {', '.join(PRECISIONS)}, not {precision!r}")
    folder.mkdir(parents=True, exist_ok=True)
    if fused and graph != "encoder":
        raise ValueError("fused attention is an encoder variant")
    stem = graph_stem(graph, precision, batch, fused)
    extra = {"fused_attention": True} if fused else {}
    proto, inputs, outputs = BUILDERS[graph](model, GRAPH_DTYPES[precision], batch, **extra)
    onnx.checker.check_model(proto, full_check=False)
    target = folder / f"{stem}.onnx"
    details: dict[str, Any] = {"exporter": EXPORTER, "graph_nodes": len(proto.graph.node)}
    if fused:
        details["attention"] = FUSED
    if _heads_detail(graph, model) is not None:
        details["alignment_heads"] = _heads_detail(graph, model)
    quantization = quantization_detail(graph, precision)
    if quantization == QUANTIZATION:
        quantize_graph(proto, target)
    else:
        if quantization == blockwise.DETAIL:
            blockwise.quantize_matmuls(proto)
            if graph == "decoder" and not blockwise.gather_tied(proto, *TIED_EMBEDDING):
                raise RuntimeError("the decoder graph has no tied token embedding to quantize")
        save_graph(proto, target)
    if quantization is not None:
        details["quantization"] = quantization
    manifest = Manifest(
        graph=graph,
        file=target.name,
        precision=graph_precision(precision),
        model_name=model.name,
        model_digest=model.digest(),
        inputs=inputs,
        outputs=outputs,
        static_batch=batch,
        details=details,
    )
    manifest.write(folder / f"{stem}.json")
    return manifest


def _weight_bytes(proto) -> int:
    return sum(len(t.raw_data) for t in proto.graph.initializer)


def save_graph(proto, target: Path) -> None:
    """Write atomically (tmp file + rename) so concurrent runs never read half a graph."""
    import onnx

    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.onnx")
    external = _weight_bytes(proto) > EXTERNAL_DATA_BYTES
    onnx.save_model(
        proto,
        tmp,
        save_as_external_data=external,
        location=f"{target.name}.data" if external else None,
    )
    os.replace(tmp, target)


def quantize_graph(proto, target: Path) -> None:
    """int8 dynamic quantization of every MatMul with a constant weight."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    external = _weight_bytes(proto) > EXTERNAL_DATA_BYTES
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = Path(tmp) / "fp32.onnx"
        save_graph(proto, source)
        out = Path(tmp) / target.name
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(max(quiet, logging.ERROR))  # its pre-processing advice
        try:
            quantize_dynamic(
                source,
                out,
                op_types_to_quantize=list(QUANTIZATION["op_types"]),
                per_channel=QUANTIZATION["per_channel"],
                weight_type=QuantType.QInt8,
                use_external_data_format=external,
                # contrib ops (fused attention) have no shape inference: float
                extra_options={
                    "MatMulConstBOnly": True,
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )
        finally:
            logging.getLogger().setLevel(quiet)
        if external:
            for data in Path(tmp).glob(f"{target.name}*.data"):
                os.replace(data, target.parent / data.name)
        os.replace(out, target)
