"""A dependency-free reader and writer for the safetensors format.

Layout: 8 bytes little-endian header length N, N bytes of JSON (``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, offsets relative to the end of the
header), then the raw little-endian tensor bytes.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from runtime.errors import ModelFormatError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (as uint16) to float32; numpy has no bfloat16, so we widen."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of ``path`` as an owned numpy array (bfloat16 widened to float32)."""
    if path.stat().st_size < 8:
        raise ModelFormatError(
            f"{path} is not a safetensors file: it has {path.stat().st_size} bytes"
        )
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            (n,) = struct.unpack_from("<Q", buf, 0)
            header = json.loads(bytes(buf[8 : 8 + n]))
        except (struct.error, ValueError) as exc:
            raise ModelFormatError(f"{path} is not a safetensors file: {exc}") from exc
        base = 8 + n
        out: dict[str, np.ndarray] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            if base + end > len(buf):
                raise ModelFormatError(f"{path} is truncated: {name} ends past the end of file")
            kind = info["dtype"]
            if kind not in _DTYPES and kind != "BF16":
                raise ModelFormatError(f"{path}: tensor {name} has unsupported dtype {kind}")
            dtype = np.uint16 if kind == "BF16" else _DTYPES[kind]
            arr = np.frombuffer(buf, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize,
                                offset=base + begin).reshape(info["shape"]).copy()  # fmt: skip
            out[name] = bfloat16_to_float32(arr) if kind == "BF16" else arr
    return out


def write_safetensors(
    path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` to ``path`` in safetensors layout (names sorted, header 8-byte aligned)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    arrays = {name: np.ascontiguousarray(tensors[name]) for name in sorted(tensors)}
    for name, arr in arrays.items():
        if arr.dtype not in _NAMES:
            raise ValueError(f"cannot write {name}: dtype {arr.dtype} has no safetensors name")
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}  # fmt: skip
        offset += arr.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in arrays.values():
            f.write(arr.data)  # native order: little-endian on every platform we run on
