"""The float16 cross-attention kernel (``kernels/cross_attention_fp16.c``), built on first use.

ONNX Runtime's CPU kernels have no attention that reads float16 keys and values as they are:
their float16 paths widen to float32 in memory first and are slower than float32
(``tools/bench_cross_attention.py``). A decoder step is bound by reading every row's
cross-attention keys and values (147 MB at 8 rows for tiny.en), so this kernel, which widens
in registers, halves that read and the memory that holds them. It cannot be an ONNX Runtime
custom operator here (that needs ONNX Runtime's C headers, which no package registry this
project installs from ships), so the decoder runs as graphs cut around it (``split``).

The shared library is compiled with the system's C compiler the first time and kept in the
ONNX cache folder, keyed by the source's digest. Without a compiler, on a CPU without
AVX-512, or where the build fails, ``load_kernel`` says why and the decoder graph computes the
attention itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
SOURCE = Path(__file__).resolve().parent / "kernels" / "cross_attention_fp16.c"
CFLAGS = ("-O3", "-ffast-math", "-fopenmp", "-shared", "-fPIC")
PANEL = 16  # keys per panel: the kernel reads keys as (rows*heads, ceil(S/16), dh, 16)


class CrossAttentionKernel:
    """softmax(q K^T) V for every row and head, keys and values float16 (see the C source)."""

    def __init__(self, library: ctypes.CDLL, threads: int) -> None:
        self._xattn = library.xattn
        self.threads = threads

    def __call__(
        self, q: np.ndarray, keys: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """q (B, H, T, dh) float32, scaled; keys (B, H, P, dh, 16) and values (B, H, S, dh)
        float16 -> the context (B, H, T, dh) and the scores before the softmax (B, H, T, S)."""
        b, h, t, dh = q.shape
        s = values.shape[2]
        q = np.ascontiguousarray(q, np.float32)
        context = np.empty((b, h, t, dh), np.float32)
        scores, work = np.empty((b, h, t, s), np.float32), np.empty((b, h, t, s), np.float32)
        arrays = (q, keys, values, context, scores, work)
        pointers = [ctypes.c_void_p(a.ctypes.data) for a in arrays]
        self._xattn(*pointers, b * h, t, dh, s, self.threads)
        return context, scores


def to_panels(keys: np.ndarray) -> np.ndarray:
    """Keys (B, H, dh, S) as the kernel reads them: (B, H, ceil(S/16), dh, 16) float16, zero
    past S (the ``cross_kv`` graph of ``split`` makes the same layout in the graph)."""
    b, h, dh, s = keys.shape
    panels = -(-s // PANEL)
    padded = np.pad(keys, ((0, 0), (0, 0), (0, 0), (0, panels * PANEL - s)))
    grouped = padded.reshape(b, h, dh, panels, PANEL).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(grouped, np.float16)


def load_kernel(cache: Path, threads: int) -> CrossAttentionKernel | str:
    """The kernel, built into ``cache`` when not there yet; or why it cannot run here."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    library = cache / f"cross_attention_fp16-{digest}.so"
    if not library.exists():
        built = _build(library)
        if built:
            return built
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when libgomp loads
    try:
        loaded = ctypes.CDLL(str(library))
    except OSError as exc:
        return f"the float16 cross-attention kernel did not load ({exc})"
    if not loaded.xattn_supported():
        return "the float16 cross-attention kernel needs a CPU with AVX-512 (BW, VL)"
    loaded.xattn.restype = None
    return CrossAttentionKernel(loaded, threads)


def _build(library: Path) -> str | None:
    """Compile the kernel to ``library`` (written whole or not at all); None, or why not."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return "no C compiler (cc) to build the float16 cross-attention kernel"
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        out = Path(tmp) / library.name
        cmd = [compiler, *CFLAGS, str(SOURCE), "-o", str(out), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return f"the float16 cross-attention kernel did not build: {last}"
        os.replace(out, library)
    log.info("built %s", library)
    return None
