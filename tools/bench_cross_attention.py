"""The decoder's cross-attention, one step of every layer, in ways ONNX Runtime's CPU provider
can run it, against this project's float16 kernel (``backends/onnx/kernels/``).

    python tools/bench_cross_attention.py --rows 1,4,8 --rounds 3

A decoder step of B rows reads every layer's cross-attention keys and values: for tiny.en at 8
rows 147 MB of float32, about 4 of the 10.5 ms a step takes on this project's 2-core machine
(docs/benchmarks.md). Half the bytes in float16 would halve that if a kernel read them as they
are; ONNX Runtime's x86 kernels widen float16 to float32 first, or compute in it slowly. This
measures, with tiny.en's shapes by default (6 heads of 64, 1500 keys, 4 layers):

- ``ort-fp32``: MatMul + Softmax + MatMul on float32, as the decoder graph does now;
- ``ort-fp16``: the same on float16 keys and values (query and result cast);
- ``ort-attention-fp16``: ONNX's ``Attention`` (opset 23) on float16;
- ``ort-mha-fp16``: ``com.microsoft.MultiHeadAttention`` on float16;
- ``kernel-fp16``: the runtime's C kernel (``backends.onnx.kernel``, built here with ``cc``;
  AVX-512), on as many threads as ONNX Runtime gets.

Each variant runs in its own process, rounds interleaved, every round printed, with its largest
difference from a float64 reference. The ``cpu`` profile decodes with the kernel
(``cross_attention_kernel``; docs/benchmarks.md, fifth pass).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("ort-fp32", "ort-fp16", "ort-attention-fp16", "ort-mha-fp16", "kernel-fp16")
THREADS = 2
SHAPE_ARGS = ("tokens", "heads", "head_dim", "keys", "layers")


def inputs(rows: int, heads: int, dh: int, keys: int, layers: int, tokens: int) -> dict:
    """Scaled queries (B, H, T, dh), keys (B, H, dh, S) and values (B, H, S, dh) per layer."""
    rng = np.random.default_rng(0)
    q = (rng.standard_normal((rows, heads, tokens, dh)) / np.sqrt(dh)).astype(np.float32)
    k = [rng.standard_normal((rows, heads, dh, keys)).astype(np.float32) for _ in range(layers)]
    v = [rng.standard_normal((rows, heads, keys, dh)).astype(np.float32) for _ in range(layers)]
    return {"q": q, "k": k, "v": v}


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = q.astype(np.float64) @ k.astype(np.float64)
    w = np.exp(s - s.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)) @ v.astype(np.float64)


def ort_runner(variant: str, data: dict):
    """An ONNX Runtime session of every layer's attention and its feeds."""
    import onnxruntime as ort
    from onnx import TensorProto as TP
    from onnx import helper

    q, layers = data["q"], len(data["k"])
    b, h, t, dh = q.shape
    s = data["k"][0].shape[-1]
    half = variant != "ort-fp32"
    kv_type = TP.FLOAT16 if half else TP.FLOAT
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Cast", ["q"], ["qh"], to=TP.FLOAT16)] if half else []
    qname = "qh" if half else "q"
    graph_inputs, outputs, feeds = [vi("q", TP.FLOAT, list(q.shape))], [], {"q": q}
    if variant == "ort-mha-fp16":  # queries (B, T, H*dh)
        feeds["q"] = np.ascontiguousarray(q.transpose(0, 2, 1, 3).reshape(b, t, h * dh))
        graph_inputs = [vi("q", TP.FLOAT, [b, t, h * dh])]
    k_shape = [b, h, dh, s] if variant in ("ort-fp32", "ort-fp16") else [b, h, s, dh]
    for i in range(layers):
        k = data["k"][i] if k_shape[-1] == s else data["k"][i].transpose(0, 1, 3, 2)
        feeds[f"k{i}"] = np.ascontiguousarray(k, np.float16 if half else np.float32)
        feeds[f"v{i}"] = data["v"][i].astype(np.float16 if half else np.float32)
        graph_inputs += [vi(f"k{i}", kv_type, k_shape), vi(f"v{i}", kv_type, [b, h, s, dh])]
        out = f"o{i}"
        if variant in ("ort-fp32", "ort-fp16"):
            nodes += [
                helper.make_node("MatMul", [qname, f"k{i}"], [f"s{i}"]),
                helper.make_node("Softmax", [f"s{i}"], [f"w{i}"], axis=-1),
                helper.make_node("MatMul", [f"w{i}", f"v{i}"], [out]),
            ]
        elif variant == "ort-attention-fp16":
            nodes.append(helper.make_node("Attention", [qname, f"k{i}", f"v{i}"], [out], scale=1.0))
        else:
            nodes.append(
                helper.make_node(
                    "MultiHeadAttention",
                    [qname, f"k{i}", f"v{i}"],
                    [out],
                    domain="com.microsoft",
                    num_heads=h,
                    scale=1.0,
                )
            )
        if half:
            nodes.append(helper.make_node("Cast", [out], [f"c{i}"], to=TP.FLOAT))
            out = f"c{i}"
        outputs.append(vi(out, TP.FLOAT, None))
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(
        helper.make_graph(nodes, "x", graph_inputs, outputs), opset_imports=opsets
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )

    def run() -> np.ndarray:
        last = session.run(None, feeds)[-1]
        return (
            last.reshape(b, t, h, dh).transpose(0, 2, 1, 3) if variant == "ort-mha-fp16" else last
        )

    return run


def build_kernel(folder: Path):
    """The runtime's kernel (``backends.onnx.kernel``), built into ``folder``; SystemExit where
    it cannot run here."""
    from backends.onnx.kernel import load_kernel

    kernel = load_kernel(folder, THREADS)
    if isinstance(kernel, str):
        raise SystemExit(kernel)
    return kernel


def kernel_runner(kernel, data: dict):
    """The kernel over every layer: keys repacked as panels of 16, values as they are."""
    from backends.onnx.kernel import to_panels

    q = np.ascontiguousarray(data["q"])
    keys = [to_panels(k) for k in data["k"]]
    values = [np.ascontiguousarray(v, np.float16) for v in data["v"]]

    def run() -> np.ndarray:
        for k, v in zip(keys, values):
            out = kernel(q, k, v)[0]
        return out

    return run


def measure_one(variant: str, shape: dict, calls: int) -> dict:
    """One variant in this process: median ms for every layer, and its largest error."""
    data = inputs(**shape)
    with tempfile.TemporaryDirectory() as tmp:
        run = (
            kernel_runner(build_kernel(Path(tmp)), data)
            if variant == "kernel-fp16"
            else ort_runner(variant, data)
        )
        error = float(np.abs(run() - reference(data["q"], data["k"][-1], data["v"][-1])).max())
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return {"ms": 1000 * statistics.median(times), "max_error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1,4,8", help="decoder rows (B), comma-separated")
    parser.add_argument("--tokens", type=int, default=1, help="query tokens per row (1: a step)")
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--keys", type=int, default=1500)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # VARIANT:ROWS, in a child process
    args = parser.parse_args()
    shape = {("dh" if k == "head_dim" else k): getattr(args, k) for k in SHAPE_ARGS}
    if args.one:
        variant, rows = args.one.split(":")
        print(json.dumps(measure_one(variant, dict(shape, rows=int(rows)), args.calls)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    rounds: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.rounds):
        for rows in (int(r) for r in args.rows.split(",")):
            for variant in variants:
                cmd = [sys.executable, __file__, f"--one={variant}:{rows}", f"--calls={args.calls}"]
                cmd += [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in SHAPE_ARGS]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                rounds.setdefault((variant, rows), []).append(json.loads(out.stdout))
    print("| variant | rows | ms per step, every round | median | KV MB | max error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (variant, rows), results in rounds.items():
        per_round = " / ".join(f"{r['ms']:.2f}" for r in results)
        median = statistics.median(r["ms"] for r in results)
        width = 2 if variant.endswith("fp16") else 4
        mb = rows * args.heads * args.head_dim * args.keys * 2 * args.layers * width / 1e6
        print(
            f"| {variant} | {rows} | {per_round} | {median:.2f} "
            f"| {mb:.0f} | {results[0]['max_error']:.1e} |"
        )


if __name__ == "__main__":
    main()
