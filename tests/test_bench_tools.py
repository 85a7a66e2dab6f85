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
            "ort-int8,ov-bf16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    timed = re.search(r"round 1 ort-int8: ([\d.]+) ms per window", done.stdout)
    assert timed and float(timed[1]) > 1.0, done.stdout + done.stderr
    if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
        assert re.search(r"round 1 ov-bf16: [\d.]+ ms per window", done.stdout)
    else:
        assert "round 1 ov-bf16: failed: no OpenVINO execution provider here" in done.stdout
