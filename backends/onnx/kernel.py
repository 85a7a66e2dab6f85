"""This project's CPU kernels (``kernels/*.c``), built on first use.

``cross_attention.c``: the decoder's cross-attention over float16 or int8 keys and values. ONNX
Runtime's CPU kernels have no attention that reads float16 keys and values as they are: their
float16 paths widen to float32 in memory first and are slower than float32
(``tools/bench_cross_attention.py``). A decoder step is bound by reading every row's
cross-attention keys and values (147 MB at 8 rows for tiny.en), so this kernel, which widens
in registers, halves that read and the memory that holds them; with int8 keys and values (one
float32 scale per key and value row of a head, ``CrossQuantizer``) it reads a quarter.

``self_attention_bf16.c``: the encoder's self-attention with bfloat16 products (AVX512_BF16),
twice the arithmetic per instruction of ONNX Runtime's float32 MultiHeadAttention, which is
most of an encoder window's time on a CPU.

``logits_int8.c``: the decoder's logits over the int8 token embedding, the same arithmetic as
ONNX Runtime's ``MatMulNBits`` at accuracy level 4 in about half its time for a batch of rows.

None of them can be an ONNX Runtime custom operator here (that needs ONNX Runtime's C headers,
which no package registry this project installs from ships), so the graphs run cut around
them (``split``, ``split_encoder``). A shared library is compiled with the system's C compiler
the first time and kept in the ONNX cache folder, keyed by its source's and headers' digest.
Without a compiler, on a CPU without the instructions, or where the build fails, the loaders
say why and the graphs compute these themselves. Scratch memory is kept per thread between
calls (``kept``): fresh arrays of a few MB at every call fragment glibc's heap."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from backends.onnx.toolchain import c_compiler

log = logging.getLogger(__name__)
SOURCE = Path(__file__).resolve().parent / "kernels" / "cross_attention.c"
SELF_SOURCE = SOURCE.with_name("self_attention_bf16.c")
LOGITS_SOURCE = SOURCE.with_name("logits_int8.c")
CFLAGS = ("-O3", "-ffast-math", "-fopenmp", "-shared", "-fPIC")
PANEL = 16  # keys per panel: the kernel reads keys as (rows*heads, ceil(S/16), dh, 16)
SCALE_BYTES = 4  # int8 keys and values: each key's (value row's) float32 scale after its numbers


class CrossAttentionKernel:
    """softmax(q K^T) V for every row and head, keys and values float16 or int8 (see the C
    source)."""

    def __init__(self, library: ctypes.CDLL, threads: int) -> None:
        self._xattn = {np.dtype(np.float16): library.xattn, np.dtype(np.int8): library.xattn_i8}
        for function in self._xattn.values():
            function.restype = None
        self._scratch_size = library.xattn_scratch
        self._scratch_size.restype = ctypes.c_size_t
        self.quantizer = CrossQuantizer(library)
        self.threads = threads
        self._local = threading.local()  # each decoding thread's scratch for the weights
        self._wide = threading.local()  # and for a prompt's bfloat16 keys and values (int8)

    def __call__(
        self, q: np.ndarray, keys: np.ndarray, values: np.ndarray, scores: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """q (B, H, T, dh) float32, scaled; keys (B, H, P, dh, 16) and values (B, H, S, dh)
        float16, or int8 as ``CrossQuantizer`` packs them -> the context (B, H, T, dh) and,
        when ``scores``, the scores before the softmax (B, H, T, S); else None, and the softmax
        is computed in reused scratch memory (a prompt's piece of 48 tokens paid ~0.5 ms a layer
        in page faults for fresh arrays)."""
        b, h, t, dh = q.shape
        if dh % 16 or dh > 256:
            raise ValueError(f"the kernel takes heads of a multiple of 16 up to 256 wide, not {dh}")
        s = values.shape[2]
        q = np.ascontiguousarray(q, np.float32)
        context = np.empty((b, h, t, dh), np.float32)
        work = kept(self._local, b * h * t * s, np.float32).reshape(b, h, t, s)
        raw = np.empty((b, h, t, s), np.float32) if scores else work  # softmax in place
        arrays = (q, keys, values, context, raw, work)
        pointers = [ctypes.c_void_p(a.ctypes.data) for a in arrays]
        extra = []
        if keys.dtype == np.int8:  # a prompt's rows in bfloat16 pairs need this scratch
            size = self._scratch_size(dh, s, self.threads) if t >= 8 else 0
            extra.append(ctypes.c_void_p(kept(self._wide, size, np.uint8).ctypes.data))
        self._xattn[keys.dtype](*pointers, b * h, t, dh, s, self.threads, *extra)
        return context, raw if scores else None


class CrossQuantizer:
    """The ``cross_kv`` graph's float32 keys (B, H, dh, S) and values (B, H, S, dh) -> int8, each
    key and each value row of a head with its own scale (max |x| / 127) packed after its
    numbers: keys as panels (B, H, ceil(S/16), dh + 4, 16), values (B, H, S, dh + 4). Per key
    and head, the scales follow the keys' spread; WER did not rise in a simulation on three sets
    (``tools/cross_kv_precision.py``)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._keys, self._values = library.xquant_k, library.xquant_v
        pointers: list[Any] = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self._keys.argtypes = [*pointers, ctypes.c_int]
        self._values.argtypes = pointers
        for function in (self._keys, self._values):
            function.restype = None

    @staticmethod
    def shape(role: str, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """The int8 array's shape for a float32 ``cross_k`` or ``cross_v`` shape (the leading
        dimensions may be symbolic)."""
        if role == "cross_k":
            dh, s = int(shape[-2]), int(shape[-1])
            return (*shape[:-2], -(-s // PANEL), dh + SCALE_BYTES, PANEL)
        return (*shape[:-1], int(shape[-1]) + SCALE_BYTES)

    def __call__(self, role: str, wide: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``wide`` (float32, contiguous) quantized into ``out`` (int8 of ``shape``) or a new
        array."""
        if out is None:
            out = np.empty(self.shape(role, wide.shape), np.int8)
        if wide.dtype != np.float32 or out.shape != self.shape(role, wide.shape):
            raise ValueError(f"cannot pack {role} {wide.dtype}{wide.shape} into {out.shape}")
        assert wide.flags.c_contiguous and out.flags.c_contiguous
        pointers = (wide.ctypes.data, out.ctypes.data)
        if role == "cross_k":
            self._keys(*pointers, wide.size // wide.shape[-1] // wide.shape[-2], *wide.shape[-2:])
        else:
            self._values(*pointers, wide.size // wide.shape[-1], wide.shape[-1])
        return out


class SelfAttentionKernel:
    """The encoder's softmax(q k^T) v per window and head in bfloat16 (see the C source)."""

    def __init__(self, library: ctypes.CDLL, threads: int) -> None:
        self._sattn = library.sattn
        self._size = library.sattn_scratch
        self._size.restype = ctypes.c_size_t
        self.threads = threads
        self._local = threading.local()  # each encoding thread's scratch, kept between calls

    def __call__(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        heads: int,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """q, k, v (B, T, H*dh) float32, q and k scaled -> the context (B, T, H*dh), written
        into ``out`` when given (contiguous float32 of that shape)."""
        b, t, width = q.shape
        if width % heads or (width // heads) % 32 or width // heads > 128:
            raise ValueError(f"the kernel takes heads of 32, 64, 96 or 128, not {width}/{heads}")
        q, k, v = (np.ascontiguousarray(a, np.float32) for a in (q, k, v))
        context = np.empty((b, t, width), np.float32) if out is None else out
        assert context.shape == q.shape and context.flags.c_contiguous
        dims = (b, t, heads, width // heads, self.threads)
        scratch = kept(self._local, self._size(*dims), np.uint8)  # packed heads, per thread
        pointers = [ctypes.c_void_p(a.ctypes.data) for a in (q, k, v, context)]
        self._sattn(*pointers, *dims, ctypes.c_void_p(scratch.ctypes.data))
        return context


class LogitsKernel:
    """x times int8 weights in ``MatMulNBits``'s blocks of 32, as its accuracy level 4 computes
    it (see the C source), the weights in ``to_logit_panels``' layout."""

    def __init__(self, library: ctypes.CDLL, threads: int) -> None:
        self._logits = library.logits
        self.threads = threads

    def __call__(self, x: np.ndarray, panels: np.ndarray, scales: np.ndarray, n: int) -> np.ndarray:
        """x (..., K) float32 -> (..., n) float32."""
        k = x.shape[-1]
        if k % 32 or panels.shape[1] * 32 != k or panels.shape[0] * 16 < n:
            raise ValueError(f"panels {panels.shape} do not fit inputs of {k} and {n} outputs")
        rows = np.ascontiguousarray(x, np.float32).reshape(-1, k)
        out = np.empty((len(rows), n), np.float32)
        pointers = [ctypes.c_void_p(a.ctypes.data) for a in (rows, panels, scales, out)]
        x_p, w_p, s_p, out_p = pointers
        self._logits(x_p, len(rows), k, w_p, s_p, out_p, n, self.threads)
        return out.reshape(*x.shape[:-1], n)


def kept(local: threading.local, n: int, dtype: type) -> np.ndarray:
    """This thread's buffer of ``n`` items of ``dtype`` (grown when short, kept between calls)."""
    buffer = getattr(local, "buffer", None)
    if buffer is None or buffer.size < n or buffer.dtype != dtype:
        buffer = local.buffer = np.empty(n, dtype)
    return buffer[:n]


def to_logit_panels(q8: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``MatMulNBits``' weights (N, K/32, 32) uint8 and scales (N * K/32,) as the logits kernel
    reads them: (ceil(N/16), K/32, 8, 16, 4) uint8 (zero weights past N) and (ceil(N/16),
    K/32, 16) float32."""
    n, blocks, _ = q8.shape
    panels = -(-n // 16)
    padded = np.pad(q8, ((0, panels * 16 - n), (0, 0), (0, 0)), constant_values=128)
    weights = padded.reshape(panels, 16, blocks, 8, 4).transpose(0, 2, 3, 1, 4)
    wide = np.pad(scales.reshape(n, blocks), ((0, panels * 16 - n), (0, 0)))
    scale = wide.reshape(panels, 16, blocks).transpose(0, 2, 1)
    return np.ascontiguousarray(weights, np.uint8), np.ascontiguousarray(scale, np.float32)


def to_panels(keys: np.ndarray) -> np.ndarray:
    """Keys (B, H, dh, S) as the kernel reads them: (B, H, ceil(S/16), dh, 16) float16, zero
    past S (the ``cross_kv`` graph of ``split`` makes the same layout in the graph)."""
    b, h, dh, s = keys.shape
    panels = -(-s // PANEL)
    padded = np.pad(keys, ((0, 0), (0, 0), (0, 0), (0, panels * PANEL - s)))
    grouped = padded.reshape(b, h, dh, panels, PANEL).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(grouped, np.float16)


def load_kernel(cache: Path, threads: int) -> CrossAttentionKernel | str:
    """The cross-attention kernel, built into ``cache`` when not there yet; or why it cannot
    run here."""
    return _load(SOURCE, cache, "cross-attention", "xattn", "AVX-512 (BW, VL)", threads)


def load_self_attention(cache: Path, threads: int) -> SelfAttentionKernel | str:
    """The encoder's bfloat16 self-attention kernel, built into ``cache`` when not there yet;
    or why it cannot run here."""
    return _load(SELF_SOURCE, cache, "bfloat16 self-attention", "sattn", "AVX-512 BF16", threads)


def load_logits(cache: Path, threads: int) -> LogitsKernel | str:
    """The decoder's int8 logits kernel, built into ``cache`` when not there yet; or why it
    cannot run here."""
    return _load(LOGITS_SOURCE, cache, "int8 logits", "logits", "AVX-512 VNNI", threads)


KERNELS = {"xattn": CrossAttentionKernel, "sattn": SelfAttentionKernel, "logits": LogitsKernel}


def _load(source: Path, cache: Path, what: str, entry: str, needs: str, threads: int) -> Any:
    """The kernel whose C function is ``entry`` (with ``<entry>_supported`` saying whether this
    CPU has ``needs``), wrapped in its class; or why it cannot run here."""
    loaded = _library(source, cache, what)
    if isinstance(loaded, str):
        return loaded
    if not getattr(loaded, f"{entry}_supported")():
        return f"the {what} kernel needs a CPU with {needs}"
    getattr(loaded, entry).restype = None
    return KERNELS[entry](loaded, threads)


def _library(source: Path, cache: Path, what: str) -> ctypes.CDLL | str:
    """``source`` compiled into ``cache`` (keyed by its digest) and loaded; or why not."""
    headers = b"".join(h.read_bytes() for h in sorted(source.parent.glob("*.h")))
    text = source.read_bytes() + headers + " ".join(CFLAGS).encode()
    digest = hashlib.sha256(text).hexdigest()[:16]
    library = cache / f"{source.stem}-{digest}.so"
    if not library.exists():
        built = _build(source, library)
        if built:
            return f"the {what} kernel did not build: {built}"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when libgomp loads
    try:
        return ctypes.CDLL(str(library))
    except OSError as exc:
        return f"the {what} kernel did not load ({exc})"


def _build(source: Path, library: Path) -> str | None:
    """Compile ``source`` to ``library`` (written whole or not at all); None, or why not."""
    compiler = c_compiler()
    if compiler is None:
        return "no C compiler (cc)"
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        out = Path(tmp) / library.name
        cmd = [compiler, *CFLAGS, str(source), "-o", str(out), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or ["no output"])[-1]
        os.replace(out, library)
    log.info("built %s", library)
    return None
