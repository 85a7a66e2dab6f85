"""int8 weights of the decoder-side graphs as ONNX Runtime's ``MatMulNBits`` (8 bits, blocks of 32).

``quantize_dynamic``'s ``DynamicQuantizeMatMul`` quantizes its activations with one scale per
call: the rows decoded together share it, so a row's tokens depended on which other rows (other
files, other requests) were in its batch. ``MatMulNBits`` with ``accuracy_level = 4`` quantizes
each row's activations per block of ``BLOCK`` inputs instead, so a row gets bit-identical
results whatever it is batched with, at about the speed of the per-call kernel (measured on the
decoder's shapes). Weights are symmetric int8 per block of ``BLOCK`` input channels.

Whisper ties its token embedding to the output projection. Once the projection is int8,
``gather_tied`` reads the embedding's rows from the same int8 blocks (``GatherBlockQuantized``)
instead of keeping a second, float copy of the table: for tiny 40 MB less in the file and 16 MB
less resident, at the same step time.
"""

from __future__ import annotations

import numpy as np

BLOCK = 32
BITS = 8
ACCURACY_LEVEL = 4  # int8 activations (per row and block) on int8 weights: the VNNI/AMX kernels
DETAIL = {
    "method": "com.microsoft.MatMulNBits",
    "bits": BITS,
    "block_size": BLOCK,
    "accuracy_level": ACCURACY_LEVEL,
    "symmetric": True,
    "tied_embedding": "com.microsoft.GatherBlockQuantized",
}
# ONNX Runtime's 8-bit MatMulNBits kernels: x86-64 from 1.22, ARM64 from 1.23. Vendor builds
# (VitisAI, OpenVINO, QNN packages) can lag behind; older versions keep quantize_dynamic.
MIN_ORT = (1, 23)


def supported(version: str | None = None) -> bool:
    """Whether this ONNX Runtime has fast 8-bit ``MatMulNBits`` kernels on CPUs."""
    if version is None:
        import onnxruntime

        version = onnxruntime.__version__
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    return tuple(parts) >= MIN_ORT


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float weight -> packed uint8 (N, K/BLOCK, BLOCK) with zero point 128, and float32
    scales (N * K/BLOCK,), as ``MatMulNBits`` reads them."""
    k, n = w.shape
    blocks = np.ascontiguousarray(w.T, dtype=np.float32).reshape(n, k // BLOCK, BLOCK)
    scales = np.abs(blocks).max(-1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(blocks / scales[..., None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8), scales.astype(np.float32).reshape(-1)


def quantize_matmuls(proto) -> int:
    """Replace, in place, every ``MatMul`` whose B is a 2-D float32 initializer with K a multiple
    of ``BLOCK`` by a ``MatMulNBits``; returns how many were replaced."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    nodes, replaced, dropped = [], 0, set()
    for node in proto.graph.node:
        b = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if b is None or len(b.dims) != 2 or b.data_type != TensorProto.FLOAT or b.dims[0] % BLOCK:
            nodes.append(node)
            continue
        k, n = b.dims
        packed, scales = quantize_weight(numpy_helper.to_array(b))
        base = node.input[1]
        proto.graph.initializer.extend(
            [
                numpy_helper.from_array(packed, f"{base}_q8"),
                numpy_helper.from_array(scales, f"{base}_scales"),
            ]
        )
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{base}_q8", f"{base}_scales"],
                list(node.output),
                name=f"{node.name}_nbits",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=BITS,
                block_size=BLOCK,
                accuracy_level=ACCURACY_LEVEL,
            )
        )
        if uses[base] == 1:
            dropped.add(base)
        replaced += 1
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    kept = [t for t in proto.graph.initializer if t.name not in dropped]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    if replaced and not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return replaced


def gather_tied(proto, table: str, projection: str) -> bool:
    """Replace, in place, the ``Gather`` of rows of float initializer ``table`` (and the
    ``Cast`` to float after it, for a float16 table) by a ``GatherBlockQuantized`` of the
    int8 blocks ``quantize_matmuls`` made of ``projection`` (``table`` transposed), and drop
    ``table``. Returns whether a Gather was replaced."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    packed, scales = inits.get(f"{projection}_q8"), inits.get(f"{projection}_scales")
    nodes = list(proto.graph.node)
    gathers = [n for n in nodes if n.op_type == "Gather" and n.input[0] == table]
    if packed is None or scales is None or table not in inits or len(gathers) != 1:
        return False
    gather = gathers[0]
    rows, blocks, block = packed.dims
    output, removed = gather.output[0], [gather]
    if inits[table].data_type != TensorProto.FLOAT:  # float16 rows, then a Cast to float
        casts = [n for n in nodes if n.op_type == "Cast" and list(n.input) == [output]]
        if len(casts) != 1 or casts[0].attribute[0].i != TensorProto.FLOAT:
            return False
        output = casts[0].output[0]
        removed.append(casts[0])
    # scales per (row, block, 1): the same numbers MatMulNBits reads as one flat vector
    block_scales = numpy_helper.to_array(scales).reshape(rows, blocks, 1)
    shape = np.array([0, 0, blocks * block], np.int64)  # (B, T, blocks, BLOCK) -> (B, T, D)
    proto.graph.initializer.extend(
        [
            numpy_helper.from_array(block_scales, f"{table}_gather_scales"),
            numpy_helper.from_array(shape, f"{table}_gather_shape"),
        ]
    )
    replacement = [
        helper.make_node(
            "GatherBlockQuantized",
            [packed.name, gather.input[1], f"{table}_gather_scales"],
            [f"{output}_blocks"],
            name=f"{gather.name}_q8",
            domain="com.microsoft",
            gather_axis=0,
            quantize_axis=2,
            block_size=block,
            bits=BITS,
        ),
        helper.make_node(
            "Reshape",
            [f"{output}_blocks", f"{table}_gather_shape"],
            [output],
            name=f"{gather.name}_rows",
        ),
    ]
    at = nodes.index(gather)
    nodes = [n for n in nodes if all(n is not r for r in removed)]
    nodes[at:at] = replacement
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    kept = [t for t in proto.graph.initializer if t.name != table]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return True
