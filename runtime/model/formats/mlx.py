"""MLX Whisper folders: ``config.json`` (ModelDims fields) + ``weights.safetensors`` or
``weights.npz`` (or ``model.safetensors``), as written by mlx-whisper's convert script.

They differ from openai-whisper's state dict in three ways, undone here and redone by
``write_mlx``: MLP linears are named ``mlp1``/``mlp2`` (not ``mlp.0``/``mlp.2``), conv weights are
channels-last ``(out, kernel, in)``, and the encoder's sinusoidal positional embedding is not
stored (it is computed). An ``alignment_heads`` array, when present, is the model's (layer, head)
pairs. Quantized folders (``quantization: {group_size, bits}`` in config.json) hold packed uint32
weights with per-group ``scales`` and ``biases``; they are dequantized to the scales' dtype.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ModelFormatError
from runtime.model.formats._common import (
    alignment_heads_from,
    check_weights,
    folder_tokenizer,
    read_json,
    sinusoids,
)
from runtime.model.formats._safetensors import read_safetensors, write_safetensors
from runtime.model.weights import ModelDims, WhisperModel

WEIGHT_FILES = ("model.safetensors", "weights.safetensors", "weights.npz")  # mlx-whisper's order
_RENAMES = ((".mlp.0.", ".mlp1."), (".mlp.2.", ".mlp2."))  # (openai, mlx)
CONV_WEIGHTS = ("encoder.conv1.weight", "encoder.conv2.weight")  # channels-last in MLX
_DIM_FIELDS = tuple(f.name for f in dataclasses.fields(ModelDims))


def mlx_name(openai_name: str) -> str:
    """openai-whisper parameter name -> mlx-whisper's (the MLX backend uses it too)."""
    for theirs, ours in _RENAMES:
        openai_name = openai_name.replace(theirs, ours)
    return openai_name


def openai_name(mlx_name: str) -> str:
    for theirs, ours in _RENAMES:
        mlx_name = mlx_name.replace(ours, theirs)
    return mlx_name


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """The unsigned ``bits``-bit values packed LSB-first into the uint32 words of each row."""
    rows = packed.shape[0]
    if 32 % bits == 0:  # whole values per word: shift them out
        shifts = np.arange(32 // bits, dtype=np.uint32) * np.uint32(bits)
        return (
            (packed.astype(np.uint32)[..., None] >> shifts) & np.uint32((1 << bits) - 1)
        ).reshape(rows, -1)
    # 3, 5, 6 bits: values straddle words; read each row as one little-endian bit stream
    stream = np.unpackbits(
        packed.astype("<u4").view(np.uint8).reshape(rows, -1), axis=1, bitorder="little"
    )
    weights = (1 << np.arange(bits, dtype=np.uint32)).astype(np.uint32)
    return stream.reshape(rows, -1, bits).astype(np.uint32) @ weights


def dequantize(
    packed: np.ndarray, scales: np.ndarray, biases: np.ndarray, group_size: int, bits: int
) -> np.ndarray:
    """MLX affine dequantization: ``w = scale * q + bias`` per group of ``group_size`` inputs.

    ``packed`` is uint32 ``(out, in * bits / 32)``, values LSB-first. Returns ``(out, in)`` in the
    dtype of ``scales``, computed in that dtype as MLX does (bit-identical to ``mx.dequantize``,
    checked against mlx 0.32 for 2 to 8 bits).
    """
    if not 1 <= bits <= 8 or packed.dtype != np.uint32:
        raise ValueError(
            f"expected uint32 words of 1- to 8-bit values, got {packed.dtype} and {bits} bits"
        )
    q = _unpack(packed, bits).reshape(packed.shape[0], -1, group_size).astype(scales.dtype)
    return (q * scales[..., None] + biases[..., None]).reshape(packed.shape[0], -1)


def _dequantize_all(
    weights: dict[str, np.ndarray], quantization: dict[str, Any], source: Path
) -> None:
    if quantization.get("mode", "affine") != "affine":
        raise ModelFormatError(
            f"{source}: MLX quantization mode {quantization['mode']!r} is not readable yet"
        )
    for scales_name in [n for n in weights if n.endswith(".scales")]:
        module = scales_name[: -len(".scales")]
        own = quantization.get(module)  # a module's own parameters, where it has them
        params = own if isinstance(own, dict) else quantization
        try:
            scales, biases = weights.pop(scales_name), weights.pop(f"{module}.biases")
            group_size, bits = int(params["group_size"]), int(params["bits"])
            weights[f"{module}.weight"] = dequantize(
                weights[f"{module}.weight"], scales, biases, group_size, bits
            )
        except (KeyError, ValueError) as exc:
            raise ModelFormatError(f"{source}: cannot dequantize {module}: {exc}") from exc


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{path} is not a readable .npz file: {exc}") from exc
    return read_safetensors(path)


def read_mlx(folder: Path) -> WhisperModel:
    config = read_json(folder / "config.json")
    try:
        dims = ModelDims(**{k: int(config[k]) for k in _DIM_FIELDS})
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{folder}/config.json lacks ModelDims field {exc}") from exc
    weight_file = next(folder / f for f in WEIGHT_FILES if (folder / f).is_file())
    stored = _load_arrays(weight_file)
    heads = stored.pop("alignment_heads", None)
    if config.get("quantization"):
        _dequantize_all(stored, config["quantization"], weight_file)
    weights = {openai_name(n): a for n, a in stored.items()}
    for conv in CONV_WEIGHTS:
        if conv in weights:  # (out, kernel, in) -> (out, in, kernel)
            weights[conv] = np.ascontiguousarray(weights[conv].transpose(0, 2, 1))
    if "encoder.positional_embedding" not in weights:
        dtype = (
            weights["encoder.conv1.weight"].dtype
            if "encoder.conv1.weight" in weights
            else np.float32
        )
        weights["encoder.positional_embedding"] = sinusoids(
            dims.n_audio_ctx, dims.n_audio_state, dtype
        )
    check_weights(weights, dims, weight_file)
    return WhisperModel(
        name=folder.name,
        dims=dims,
        weights=weights,
        source=folder,
        format="mlx",
        tokenizer_path=folder_tokenizer(folder, dims.is_multilingual),
        alignment_heads=alignment_heads_from(heads),
        suppress_tokens=None,
        suppress_tokens_begin=None,
    )


def write_mlx(model: WhisperModel, folder: Path, weights_format: str = "safetensors") -> Path:
    """Write ``model`` as an mlx-whisper folder (``weights_format``: "safetensors" or "npz")."""
    if weights_format not in ("safetensors", "npz"):
        raise ValueError(f"weights_format must be 'safetensors' or 'npz', not {weights_format!r}")
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, arr in model.weights.items():
        if name == "encoder.positional_embedding":
            continue  # mlx-whisper computes it
        arrays[mlx_name(name)] = arr.transpose(0, 2, 1) if name in CONV_WEIGHTS else arr
    if model.alignment_heads:
        arrays["alignment_heads"] = np.asarray(model.alignment_heads, dtype=np.int64)
    if weights_format == "npz":
        # numeric arrays only (as np.load reads them back); given, so that mypy does not match
        # ``**arrays`` against this keyword
        np.savez(folder / "weights.npz", allow_pickle=False, **arrays)
    else:
        write_safetensors(folder / "weights.safetensors", arrays, {"format": "mlx"})
    config = {**dataclasses.asdict(model.dims), "model_type": "whisper"}
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    if model.tokenizer_path is not None and model.tokenizer_path.is_file():
        shutil.copyfile(model.tokenizer_path, folder / "tokenizer.json")
    return folder


class MLXReader:
    name = "mlx"
    expected_files = (
        "config.json (n_mels, n_audio_state, ...) with weights.safetensors or weights.npz"
    )

    def can_read(self, path: Path) -> bool:
        if not (path.is_dir() and (path / "config.json").is_file()):
            return False
        if not any((path / f).is_file() for f in WEIGHT_FILES):
            return False
        try:
            return "n_mels" in json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False

    def read(self, path: Path) -> WhisperModel:
        return read_mlx(path)
