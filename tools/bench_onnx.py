"""Which CPU path is fastest at equal accuracy: numpy vs ONNX Runtime fp32 / int8 / fp16.

Times each stage separately after a warm-up and reports medians: the encoder per 30 s window
at batch 1 and 8 (with its GFLOP/s next to a float32 matmul's GFLOP/s measured in the same run,
the machine's practical limit), and one decoder step (one new token per row, past ~ 64 tokens).
Then scores WER of ONNX fp32 vs int8 (and optionally numpy) on a LibriSpeech subset through the
runtime's ordinary transcription path, so the int8 speed-up is weighed against its accuracy::

    python tools/bench_onnx.py                              # everything, 40 utterances for WER
    python tools/bench_onnx.py --wer 0 --variants numpy,fp32,int8 --batch 1,8
    python tools/bench_onnx.py --wer 123 --wer-variants fp32,int8 --json bench.json

Graphs are exported into the backend's cache on first use (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("numpy", "fp32", "int8", "fp16")


def median_s(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """float32 GEMM throughput (numpy's BLAS, all cores): the ceiling an encoder can approach."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    return 2 * n**3 / median_s(lambda: a @ b, repeat) / 1e9


def ort_matmul_gflops(n: int = 2048, int8: bool = False, repeat: int = 5) -> float:
    """ONNX Runtime's own GEMM on the same sizes (MLAS): fp32, or int8 through the dynamic
    quantization the int8 graphs use (its ceiling, quantizing the activations included)."""
    import tempfile

    import onnxruntime as ort

    from backends.onnx.export import quantize_graph, save_graph
    from backends.onnx.graph import GraphBuilder

    rng = np.random.default_rng(0)
    g = GraphBuilder()
    x = g.add_input("x", np.float32, [n, n])
    w = g.weight("w", rng.standard_normal((n, n), np.float32))
    g.add_output(g.op("MatMul", [x, w]), "y", np.float32, [n, n])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matmul.onnx"
        (quantize_graph if int8 else save_graph)(g.build("matmul"), path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a = rng.standard_normal((n, n), np.float32)
    return 2 * n**3 / median_s(lambda: session.run(None, {"x": a}), repeat) / 1e9


def encoder_gflop(dims) -> float:
    """Multiply-adds x 2 of one 30 s window through the encoder (tiny: ~37 GFLOP)."""
    t, d, ctx = 3000, dims.n_audio_state, dims.n_audio_ctx
    conv = 2 * t * dims.n_mels * 3 * d + 2 * ctx * d * 3 * d
    per_layer = 2 * ctx * d * d * 4 + 2 * 2 * ctx * ctx * d + 2 * 2 * ctx * d * 4 * d
    return (conv + dims.n_audio_layer * per_layer) / 1e9


def load_session(model, variant: str):
    from runtime.backend import LoadOptions

    if variant == "numpy":
        from backends.cpu import CpuBackend

        return CpuBackend().load(model, LoadOptions(precision="fp32"))
    from backends.onnx import OnnxBackend

    return OnnxBackend().load(model, LoadOptions(precision=variant))


def time_encoder(session, batch: int, repeat: int) -> float:
    mel = np.random.default_rng(1).uniform(-1, 1, (batch, 80, 3000)).astype(np.float32)
    return median_s(lambda: session.encode(mel), repeat)


def time_decoder_step(
    session, features: np.ndarray, rows: int, past: int = 64, steps: int = 16
) -> float:
    """Median time of one single-token step for ``rows`` rows after ``past`` cached tokens."""
    state = session.decoder(features[:1].repeat(rows, 0))
    state.logits(np.full((rows, past), 50257, dtype=np.int64))
    step = np.full((rows, 1), 440, dtype=np.int64)
    return median_s(lambda: state.logits(step), steps, warmup=2)


def bench_speed(model, variants: list[str], batches: list[int], repeat: int) -> list[dict]:
    rows = []
    gflop = encoder_gflop(model.dims)
    features = (
        np.random.default_rng(2)
        .standard_normal(
            (1, 1500, model.dims.n_audio_state),
        )
        .astype(np.float32)
    )
    for variant in variants:
        try:
            session = load_session(model, variant)
        except Exception as exc:  # noqa: BLE001  (a precision this machine cannot run is a result)
            rows.append({"variant": variant, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{variant}: cannot run here: {exc}", flush=True)
            continue
        row: dict = {"variant": variant, "describe": session.describe()}
        for b in batches:
            s = time_encoder(session, b, repeat)
            row[f"encoder_ms_per_window_b{b}"] = 1000 * s / b
            row[f"encoder_gflops_b{b}"] = gflop * b / s
        for r in (1, 5):
            row[f"decoder_step_ms_rows{r}"] = 1000 * time_decoder_step(session, features, r)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_wer(model, variants: list[str], limit: int) -> dict:
    """Corpus WER per variant over the first ``limit`` LibriSpeech utterances (all subsets)."""
    import backends.onnx.plugin
    from runtime.api import Runtime
    from runtime.plugins import Plugins
    from tools.eval_common import (
        LIBRISPEECH_SUBSETS,
        decode_audio,
        load_librispeech,
        word_errors,
    )

    utts = load_librispeech(LIBRISPEECH_SUBSETS)[:limit]
    audio = [decode_audio(u.audio) for u in utts]
    out = {"utterances": len(utts), "ref_words": None}
    for variant in variants:
        backend, precision = ("cpu", "fp32") if variant == "numpy" else ("onnx", variant)
        rt = Runtime(
            model,
            backend=backend,
            precision=precision,
            plugins=Plugins(blocked=["onnx"], extra=[backends.onnx.plugin]),
        )
        t0 = time.perf_counter()
        hyps = [rt.transcribe(a, language="en").text for a in audio]
        errors = word_errors([u.reference for u in utts], hyps)
        out["ref_words"] = errors.ref_words
        out[variant] = {
            "wer_percent": 100 * errors.wer,
            "errors": errors.errors,
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"WER {variant}: {100 * errors.wer:.2f} % ({errors.errors} errors / "
            f"{errors.ref_words} words, {len(utts)} utterances, "
            f"{time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batch", default="1,8", help="encoder batch sizes to time")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--wer", type=int, default=40, help="utterances for WER; 0 skips")
    parser.add_argument("--wer-variants", default="fp32,int8")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args(argv)
    from runtime.model.registry import resolve_model

    model = resolve_model(args.model)
    report: dict = {
        "model": model.name,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    report["matmul_fp32_gflops"] = matmul_gflops()
    report["ort_matmul_fp32_gflops"] = ort_matmul_gflops()
    report["ort_matmul_int8_gflops"] = ort_matmul_gflops(int8=True)
    report["encoder_gflop_per_window"] = encoder_gflop(model.dims)
    print(
        f"matmul 2048^3: numpy fp32 {report['matmul_fp32_gflops']:.1f}, onnxruntime fp32 "
        f"{report['ort_matmul_fp32_gflops']:.1f}, onnxruntime int8 (dynamic) "
        f"{report['ort_matmul_int8_gflops']:.1f} GFLOP/s; encoder "
        f"{report['encoder_gflop_per_window']:.1f} GFLOP per window",
        flush=True,
    )
    variants = [v for v in args.variants.split(",") if v]
    report["speed"] = bench_speed(
        model, variants, [int(b) for b in args.batch.split(",")], args.repeat
    )
    if args.wer:
        report["wer"] = bench_wer(model, args.wer_variants.split(","), args.wer)
    report["load_average_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
