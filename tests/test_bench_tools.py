"""The encoder-options benchmark behind ``profiles/cpu-bf16.toml`` runs and says when the
OpenVINO execution provider it needs is not installed (it must not time the CPU instead)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytest.importorskip("onnxruntime")


def test_bench_encoder_options_times_a_window_and_refuses_a_missing_provider():
    import onnxruntime

    done = subprocess.run(
        [
            sys.executable,
            "tools/bench_encoder_options.py",
            "--rounds",
            "1",
            "--options",
            "ort-int8,kernel-int8,ov-bf16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    timed = re.search(r"round 1 ort-int8: ([\d.]+) ms per window", done.stdout)
    assert timed and float(timed[1]) > 1.0, done.stdout + done.stderr
    kernel = r"round 1 kernel-int8: (?:[\d.]+ ms per window|failed: .*kernel cannot run here)"
    assert re.search(kernel, done.stdout), done.stdout + done.stderr
    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        assert re.search(r"round 1 ov-bf16: [\d.]+ ms per window", done.stdout)
    else:
        assert "round 1 ov-bf16: failed: no OpenVINO execution provider here" in done.stdout


CROSS_SHAPE = dict(rows=2, heads=3, dh=80, keys=37, layers=2, tokens=5)  # the kernel's edges


@pytest.mark.parametrize("variant", ["ort-fp32", "ort-fp16", "ort-attention-fp16", "ort-mha-fp16"])
def test_bench_cross_attention_variants_match_a_float64_reference(variant):
    """softmax(q K^T) V on keys not a multiple of 16, heads wider than 64, several query tokens:
    float32 exactly, float16 keys and values within their rounding."""
    from tools import bench_cross_attention as bench

    result = bench.measure_one(variant, CROSS_SHAPE, calls=2)
    assert result["max_error"] < (1e-5 if variant == "ort-fp32" else 2e-3), result
    assert result["ms"] > 0


def test_bench_cross_attention_kernel_matches_a_float64_reference(tmp_path):
    """The float16 kernel, where this machine can build and run it (cc, AVX-512)."""
    from tools import bench_cross_attention as bench

    try:
        bench.build_kernel(tmp_path)
    except SystemExit as why:
        pytest.skip(str(why))
    result = bench.measure_one("kernel-fp16", CROSS_SHAPE, calls=2)
    assert result["max_error"] < 2e-3, result


def test_cross_kv_precision_simulates_int8_keys_and_values():
    """The int8 cross-attention simulation behind the sixth pass's table runs each precision
    in its own process and reports a WER for each (jfk: both transcribe it without error)."""
    from tests.conftest import eval_file

    eval_file("jfk.flac")
    done = subprocess.run(
        [sys.executable, "tools/cross_kv_precision.py", "--sets", "jfk", "--roles", "none,kv"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    row = re.search(r"\| jfk \| ([\d.]+)% \| ([\d.]+)% \|", done.stdout)
    assert row, done.stdout + done.stderr
    assert float(row[1]) < 10.0 and float(row[2]) < 10.0


def test_bench_vs_faster_names_its_tasks_when_given_an_unknown_one():
    """A task it does not have is a one-line usage error naming the tasks it has, before any
    audio is made or any model loaded."""
    done = subprocess.run(
        [
            sys.executable,
            "tools/bench_vs_faster.py",
            "--faster-python",
            "python",
            "--tasks",
            "ch15",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and not done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert "no task 'ch15'" in last and "chapter-15" in last and "Traceback" not in done.stderr
