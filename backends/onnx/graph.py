"""A small ONNX graph builder over ``onnx.helper``: Whisper's layers as ONNX nodes, no torch.

Graphs are built straight from the in-memory numpy weights (``runtime.model.weights``), so exporting
needs only the ``onnx`` package. Linear weights are stored pre-transposed (``(in, out)``) so each
projection is one ``MatMul`` that ONNX Runtime's quantizer recognises (constant B input) and that
NPU compilers map to a GEMM. Initializers keep openai-whisper's names (``....query.weight_t``) so a
graph can be read next to the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization is a standard op from opset 17
ELEM = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int64): TensorProto.INT64,
}

Shape = Sequence[int | str]


class GraphBuilder:
    """Collects nodes and initializers; ``dtype`` is the compute dtype of float weights."""

    def __init__(self, dtype: type = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._renamed: dict[str, str] = {}  # values given a graph output's name

    # -- plumbing -------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A unique value name derived from ``hint``."""
        name, i = hint, 0
        while name in self._used:
            i += 1
            name = f"{hint}_{i}"
        self._used.add(name)
        return name

    def weight(self, name: str, array: np.ndarray, keep_dtype: bool = False) -> str:
        """An initializer; float arrays are cast to the compute dtype unless ``keep_dtype``."""
        array = np.asarray(array)
        if array.dtype.kind == "f" and not keep_dtype:
            array = array.astype(self.dtype)
        name = self.fresh(name)
        if array.ndim:  # (np.ascontiguousarray would make a scalar a 1-element vector)
            array = np.ascontiguousarray(array)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def const(self, hint: str, values, dtype: type = np.int64) -> str:
        return self.weight(hint, np.asarray(values, dtype=dtype), keep_dtype=True)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        """Add one node with one output; returns the output's name."""
        base = hint or op_type.lower()
        out = self.fresh(base)
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), [out], name=self.fresh(f"{base}/{op_type}"), **attrs
            )
        )
        return out

    def add_input(self, name: str, dtype: type, shape: Shape) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, ELEM[np.dtype(dtype)], list(shape)))
        return name

    def add_output(self, value: str, name: str, dtype: type, shape: Shape) -> None:
        """Expose ``value`` as graph output ``name``: the node that computes it is renamed to
        write ``name`` (an Identity would copy it, e.g. every KV cache on every decoder step);
        an Identity only when ``value`` is a graph input or already an output."""
        value = self._renamed.get(value, value)  # exposed before under another name
        if value != name:
            self._used.add(name)
            producer = next((n for n in self.nodes if value in n.output), None)
            taken = {o.name for o in self.outputs} | {i.name for i in self.inputs}
            if producer is None or value in taken:
                self.nodes.append(helper.make_node("Identity", [value], [name], name=f"{name}/out"))
            else:
                self._renamed[value] = name
                for node in self.nodes:
                    for io in (node.input, node.output):
                        for k, v in enumerate(io):
                            if v == value:
                                io[k] = name
        self.outputs.append(helper.make_tensor_value_info(name, ELEM[np.dtype(dtype)], list(shape)))

    def build(self, graph_name: str, contrib: bool = False) -> onnx.ModelProto:
        """The model; ``contrib`` when it uses ONNX Runtime's ``com.microsoft`` operators."""
        graph = helper.make_graph(
            self.nodes, graph_name, self.inputs, self.outputs, self.initializers
        )
        opsets = [helper.make_opsetid("", OPSET)]
        if contrib:
            opsets.append(helper.make_opsetid("com.microsoft", 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="whisper-runtime")
        model.ir_version = 8  # readable by onnxruntime >= 1.14
        return model

    def cast_in(self, value: str) -> str:
        """float32 graph input -> compute dtype (a no-op for fp32 graphs)."""
        if self.dtype == np.float32:
            return value
        return self.op("Cast", [value], f"{value}_cast", to=ELEM[self.dtype])

    def cast_out(self, value: str) -> str:
        """compute dtype -> float32 graph output (a no-op for fp32 graphs)."""
        if self.dtype == np.float32:
            return value
        return self.op("Cast", [value], f"{value}_f32", to=TensorProto.FLOAT)

    # -- layers ---------------------------------------------------------------------------------
    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        """``x @ W.T + b`` with W stored transposed as ``<prefix>.weight_t``."""
        w = self.weight(f"{prefix}.weight_t", np.asarray(weights[f"{prefix}.weight"]).T)
        y = self.op("MatMul", [x, w], f"{prefix}/matmul")
        bias = weights.get(f"{prefix}.bias")
        if bias is None:
            return y
        return self.op("Add", [y, self.weight(f"{prefix}.bias", bias)], f"{prefix}/out")

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        return self.op(
            "LayerNormalization",
            [
                x,
                self.weight(f"{prefix}.weight", weights[f"{prefix}.weight"]),
                self.weight(f"{prefix}.bias", weights[f"{prefix}.bias"]),
            ],
            f"{prefix}/ln",
            axis=-1,
            epsilon=1e-5,
        )

    def gelu(self, x: str, hint: str) -> str:
        """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (ONNX Runtime fuses it into one Gelu kernel)."""
        scaled = self.op("Div", [x, self.scalar(f"{hint}/sqrt2", np.sqrt(2.0))], f"{hint}/div")
        erf = self.op("Erf", [scaled], f"{hint}/erf")
        one_plus = self.op("Add", [erf, self.scalar(f"{hint}/one", 1.0)], f"{hint}/add")
        half_x = self.op("Mul", [x, self.scalar(f"{hint}/half", 0.5)], f"{hint}/half_x")
        return self.op("Mul", [half_x, one_plus], f"{hint}/gelu")

    def scalar(self, hint: str, value: float) -> str:
        return self.weight(hint, np.asarray(value, dtype=self.dtype))

    def split_heads(
        self, x: str, n_head: int, d_head: int, hint: str, perm: tuple[int, ...] = (0, 2, 1, 3)
    ) -> str:
        """(B, T, D) -> (B, H, T, dh) (or another ``perm`` of (B, T, H, dh))."""
        shape = self.const(f"{hint}/heads_shape", [0, 0, n_head, d_head])
        return self.op(
            "Transpose",
            [self.op("Reshape", [x, shape], f"{hint}/reshape")],
            f"{hint}/heads",
            perm=list(perm),
        )

    def merge_heads(self, x: str, d_model: int, hint: str) -> str:
        """(B, H, T, dh) -> (B, T, D)."""
        t = self.op("Transpose", [x], f"{hint}/merge_t", perm=[0, 2, 1, 3])
        return self.op(
            "Reshape", [t, self.const(f"{hint}/merge_shape", [0, 0, d_model])], f"{hint}/merged"
        )

    def attend(self, q: str, k_t: str, v: str, mask: str | None, hint: str) -> str:
        """softmax(q k^T + mask) v, q already scaled: q (B,H,T,dh), k_t (B,H,dh,S), v (B,H,S,dh)."""
        return self.attend_with_scores(q, k_t, v, mask, hint)[0]

    def attend_with_scores(
        self, q: str, k_t: str, v: str, mask: str | None, hint: str
    ) -> tuple[str, str]:
        """``attend``, and the scores before the softmax (B, H, T, S) (for word alignment)."""
        scores = self.op("MatMul", [q, k_t], f"{hint}/scores")
        if mask is not None:
            scores = self.op("Add", [scores, mask], f"{hint}/masked")
        weights = self.op("Softmax", [scores], f"{hint}/softmax", axis=-1)
        return self.op("MatMul", [weights, v], f"{hint}/context"), scores

    def mlp(self, x: str, weights: dict[str, np.ndarray], prefix: str) -> str:
        h = self.layer_norm(x, weights, f"{prefix}.mlp_ln")
        h = self.gelu(self.linear(h, weights, f"{prefix}.mlp.0"), f"{prefix}.mlp/gelu")
        return self.op("Add", [x, self.linear(h, weights, f"{prefix}.mlp.2")], f"{prefix}/mlp_res")
