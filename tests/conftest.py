"""Shared fixtures: the shipped tiny.en model, its tokenizer, and the evaluation speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO.parent / "shared" / "eval"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def rel_err(got, want) -> float:
    """Largest absolute difference relative to the largest magnitude of ``want``."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even), as float64: what the kernels' VDPBF16PS
    products read."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def cpu_has(flag: str) -> bool:
    """Whether this machine's CPU reports ``flag`` in /proc/cpuinfo (False where unreadable)."""
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def built_kernel(loader, folder: Path):
    """One of this project's CPU kernels (``backends.onnx.kernel``), built into ``folder``, or
    skip the test saying why it cannot run here (no compiler, no such instructions)."""
    built = loader(folder, 2)
    if isinstance(built, str):
        pytest.skip(built)
    return built


def eval_file(*parts: str) -> Path:
    """A file of ../shared/eval, or skip the test saying what is missing."""
    path = EVAL_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"evaluation audio {path} is absent (../shared/eval not beside the repo)")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    from runtime.model.registry import resolve_model

    return resolve_model("tiny.en")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from runtime.model.tokenizer import load_tokenizer

    return load_tokenizer(tiny_model.tokenizer_path, False)


@pytest.fixture(scope="session")
def base_model():
    from runtime.errors import ModelNotFoundError
    from runtime.model.registry import resolve_model

    try:
        return resolve_model("base")
    except ModelNotFoundError as exc:
        pytest.skip(f"multilingual base model not installed: {exc}")


@pytest.fixture(scope="session")
def cpu_runtime(tiny_model):
    from runtime.api import Runtime

    return Runtime(tiny_model, backend="cpu")  # the numpy reference backend


@pytest.fixture(scope="session")
def cpu_session(cpu_runtime):
    return cpu_runtime.session


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance (2 CPUs, as CI has) for every Ray test: ``ray.init`` costs ~6 s
    and ~1 GiB, so it starts once, only when a Ray test runs, and stops at the end."""
    ray = pytest.importorskip("ray", reason="Ray is the ray extra: pip install '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
