"""The batch size a machine can hold: the profile's floor and ceiling, and memory for the rows'
decoder state (``runtime.config.batchsize``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runtime.config import batchsize
from runtime.config.batchsize import fit_batch, row_bytes
from runtime.config.options import batch_options
from runtime.config.profiles import BatchingConfig
from runtime.config.settings import Settings
from runtime.model.weights import ModelDims

GiB, MB = 2**30, 2**20
TINY = ModelDims(80, 1500, 384, 6, 4, 51864, 448, 384, 6, 4)
LARGE_V3 = ModelDims(128, 1500, 1280, 20, 32, 51866, 448, 1280, 20, 32)


def test_row_bytes_follow_the_model():
    """tiny.en: 4 layers x (1500 + 448) columns x 384 x keys and values, and 1500 x 384
    features, in float32; large-v3's row is 25x that."""
    assert row_bytes(TINY) == 4 * (4 * 2 * 1948 * 384 + 1500 * 384)
    assert 25 * MB < row_bytes(TINY) < 27 * MB
    assert 610 * MB < row_bytes(LARGE_V3) < 620 * MB  # MiB; 0.65 GB


def test_fit_batch_keeps_floor_ceiling_and_memory():
    assert fit_batch(8, row_bytes(TINY), 8 * GiB) == batchsize.BatchFit(8)
    fit = fit_batch(8, row_bytes(LARGE_V3), 4 * GiB)  # 2 GiB for rows of 0.65 GB: 3
    assert fit.size == 3 and "holds 3 rows" in (fit.reason or "")
    assert fit_batch(8, row_bytes(LARGE_V3), 1 * GiB, floor=2).size == 2  # never under the floor
    assert fit_batch(8, row_bytes(LARGE_V3), 1 * GiB).size == 1
    assert fit_batch(8, 0, None, ceiling=4) == batchsize.BatchFit(4, "the profile's ceiling of 4")
    assert fit_batch(2, 0, None, floor=4).size == 4


def test_batch_options_cap_the_profile_size_not_the_callers(monkeypatch):
    monkeypatch.setattr(batchsize, "available_memory", lambda: 4 * GiB)
    monkeypatch.setattr("runtime.config.options.available_memory", lambda: 4 * GiB)
    profile = BatchingConfig(batch_size=8, min_batch_size=2)
    row = row_bytes(LARGE_V3)
    assert batch_options(Settings(), profile, row=row).batch_size == 3
    assert batch_options(Settings(), profile, row=row_bytes(TINY)).batch_size == 8
    assert batch_options(Settings(), profile, batch_size=8, row=row).batch_size == 8
    assert batch_options(Settings(), profile).batch_size == 8  # no row size: memory not asked


def test_profile_floor_above_ceiling_is_refused():
    with pytest.raises(ValidationError, match="min_batch_size is above max_batch_size"):
        BatchingConfig(min_batch_size=8, max_batch_size=4)


def test_available_memory_reads_this_machine():
    got = batchsize.available_memory()
    assert got is not None and 64 * MB < got < 2**50


def test_bench_batch_sizes_prints_every_round():
    """The tool behind the numbers in ``runtime.config.batchsize`` runs and reports each size."""
    import re
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "tools/bench_batch_sizes.py", "--sizes", "1,2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = re.findall(r"round 1 batch +(\d+): step ([\d.]+) ms, ([\d.]+) ms per row", done.stdout)
    assert [int(b) for b, _, _ in rows] == [1, 2]
    assert all(float(step) > 0 and float(per) > 0 for _, step, per in rows)
