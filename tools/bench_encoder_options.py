"""The encoder's options on this CPU, side by side: one 30 s window per call, each option in its
own process, rounds interleaved, every round printed.

    python tools/bench_encoder_options.py --rounds 2      # in a venv with onnxruntime-openvino

Options: ``ort-int8`` (int8 weights, fused attention, ONNX Runtime's CPU provider),
``kernel-int8`` (the cpu profile's encoder: the same graph cut around this project's bfloat16
self-attention kernel, where the CPU has AVX512_BF16), ``ort-fp32``, and with the OpenVINO
execution provider (onnxruntime-openvino) ``ov-fp32`` and ``ov-bf16`` (OpenVINO's CPU plugin
with ``INFERENCE_PRECISION_HINT`` f32 or bf16; bf16 runs natively only where the CPU has
AVX-512 BF16 or AMX). The graphs are the runtime's own exports of tiny.en (made on first use).
The figures are in ``profiles/cpu-bf16.toml`` and docs/benchmarks.md (sixth pass).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTIONS = ("ort-int8", "kernel-int8", "ort-fp32", "ov-fp32", "ov-bf16")

CHILD = """
import json, sys, time
import numpy as np
import onnxruntime as ort
from backends.onnx.export import cache_root, ensure_graph, model_folder
from runtime.model.registry import resolve_model

option = sys.argv[1]
model = resolve_model("tiny.en")
folder = model_folder(cache_root(None), model)
mel = np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32) * 0.5
if option == "kernel-int8":
    from backends.onnx import OnnxBackend
    from backends.onnx.split_encoder import KernelEncoder
    from runtime.backend import LoadOptions

    options = {"fused_attention": True, "encoder_attention_kernel": True}
    loaded = OnnxBackend().load(model, LoadOptions(precision="int8", options=options))
    if not isinstance(loaded.encoder_graph, KernelEncoder):
        raise SystemExit("the bfloat16 self-attention kernel cannot run here (see --verbose)")
    run = lambda: loaded.encode(mel)
int8 = option in ("ort-int8", "kernel-int8")
path, manifest = ensure_graph(
    model, "encoder", "int8" if int8 else "fp32", None if int8 else 1, folder, fused=int8
)
so = ort.SessionOptions()
so.intra_op_num_threads = 2
providers = ["CPUExecutionProvider"]
if option.startswith("ov"):
    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        raise SystemExit("no OpenVINO execution provider here: pip install onnxruntime-openvino")
    hint = {"ov-fp32": "f32", "ov-bf16": "bf16"}[option]
    config = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": hint}})
    providers = [("OpenVINOExecutionProvider", {"device_type": "CPU", "load_config": config})]
if option != "kernel-int8":
    session = ort.InferenceSession(str(path.parent / manifest.file), so, providers=providers)
    name = session.get_inputs()[0].name
    run = lambda: session.run(None, {name: mel})
run()
times = []
for _ in range(12):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
print(json.dumps({"ms": 1000 * float(np.median(times))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--rounds", type=int, default=2)
    ns = parser.parse_args()
    for r in range(1, ns.rounds + 1):
        for option in ns.options.split(","):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, option],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
                env=None,
            )
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"round {r} {option}: failed: {why}", flush=True)
                continue
            ms = json.loads(done.stdout.strip().splitlines()[-1])["ms"]
            print(f"round {r} {option}: {ms:.1f} ms per window", flush=True)


if __name__ == "__main__":
    main()
