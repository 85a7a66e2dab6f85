"""safetensors files through the ``safetensors`` library, with bfloat16 widened to float32.

numpy has no bfloat16, so the library's numpy loader refuses such tensors; for those (and only
those) the raw 16-bit patterns are read at the offsets the file's header gives and widened.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from runtime.errors import ModelFormatError


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (as uint16) to float32; numpy has no bfloat16, so we widen."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of ``path`` as a numpy array (bfloat16 widened to float32)."""
    try:
        tensors = load_file(str(path))  # bfloat16 comes back as ml_dtypes' type when installed
        return {
            k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v for k, v in tensors.items()
        }
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{path} is not a readable safetensors file: {exc}") from exc
    except TypeError as exc:  # a dtype numpy lacks: bfloat16 in practice
        if "bfloat16" not in str(exc).lower() and "bf16" not in str(exc).lower():
            raise ModelFormatError(f"{path}: unsupported tensor dtype ({exc})") from exc
        return _read_with_bfloat16(path)


def _read_with_bfloat16(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = (8 + n + o for o in info["data_offsets"])
        if info["dtype"] != "BF16":
            continue
        out[name] = bfloat16_to_float32(np.frombuffer(raw[begin:end], np.uint16)).reshape(
            info["shape"]
        )
    # everything else through the library, from a copy without the bfloat16 tensors
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        for name in f.keys():  # noqa: SIM118 - a safetensors handle, not a dict
            if name not in out:
                out[name] = f.get_tensor(name)
    return out


def write_safetensors(
    path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata)
