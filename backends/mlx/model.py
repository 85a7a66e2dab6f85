"""mlx-whisper's module tree, filled with the project's in-memory weights and set to one precision.

The network is ``mlx_whisper.whisper.Whisper``, so parameters have mlx-whisper's names and
layouts. They differ from ``runtime.model.weights``' openai-whisper form in three ways, undone
here once:

- MLP linears are ``mlp1`` / ``mlp2``, not ``mlp.0`` / ``mlp.2``;
- MLX convolutions are channels-last: inputs are ``(batch, frames, channels)`` and conv weights
  ``(out, kernel, in)``, so openai's ``(out, in, kernel)`` weights are transposed;
- the encoder's positional embedding is not a parameter in mlx-whisper (it recomputes sinusoids);
  the model's own table is installed instead, so converted checkpoints that round it keep it.

Nothing is downloaded: weights come from ``WhisperModel.weights`` (numpy, any float dtype).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Final

import numpy as np

from runtime.model.formats.mlx import CONV_WEIGHTS, mlx_name
from runtime.model.weights import WhisperModel

_NOT_PARAMETERS = ("encoder.positional_embedding",)  # mlx-whisper computes it
GROUP_SIZE: Final = 64  # quantization group: 64 inputs share one scale and bias (mlx's default)

# precision name -> (compute dtype name in mlx.core, quantized bits or None)
PRECISIONS: dict[str, tuple[str | None, int | None]] = {
    "fp32": ("float32", None),
    "fp16": ("float16", None),
    "bf16": ("bfloat16", None),
    "int8": (None, 8),  # compute dtype: MlxOptions.compute_dtype, else by device
    "int4": (None, 4),
}


def mlx_layout(model: WhisperModel) -> dict[str, np.ndarray]:
    """The model's parameters with mlx-whisper names and channels-last conv weights (numpy)."""
    out = {}
    for name, arr in model.weights.items():
        if name in _NOT_PARAMETERS:
            continue
        if name in CONV_WEIGHTS:  # (out, in, kernel) -> (out, kernel, in)
            arr = np.ascontiguousarray(np.asarray(arr).transpose(0, 2, 1))
        out[mlx_name(name)] = np.asarray(arr)
    return out


def build_whisper(
    model: WhisperModel, dtype: Any, bits: int | None = None, group_size: int = GROUP_SIZE
) -> Any:
    """An evaluated ``mlx_whisper.whisper.Whisper`` holding ``model``'s weights in ``dtype``;
    Linear and Embedding layers quantized to ``bits`` (affine, per ``group_size``) when given.

    Quantization starts from weights already cast to ``dtype``, so scales and activations use it.
    """
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_whisper.whisper import ModelDimensions, Whisper

    net = Whisper(ModelDimensions(**dataclasses.asdict(model.dims)), dtype)
    params = [(name, mx.array(arr).astype(dtype)) for name, arr in mlx_layout(model).items()]
    # mlx-whisper keeps (layer, head) pairs as an array attribute, which strict loading counts
    params.append(("alignment_heads", net.alignment_heads))
    net.load_weights(params, strict=True)  # every parameter named, shapes checked
    if model.alignment_heads:
        net.alignment_heads = mx.array(np.asarray(model.alignment_heads, dtype=np.int64))
    pos = model.weights["encoder.positional_embedding"]
    net.encoder._positional_embedding = mx.array(np.asarray(pos, dtype=np.float32)).astype(dtype)
    if bits is not None:
        nn.quantize(
            net,
            group_size=group_size,
            bits=bits,
            class_predicate=lambda _path, m: _quantizable(m, group_size),
        )
    net.eval()
    mx.eval(net.parameters(), net.encoder._positional_embedding)
    return net


def _quantizable(module: Any, group_size: int) -> bool:
    """Linear and Embedding layers whose input width splits into whole groups (all of Whisper's
    projections and its token embedding; convolutions and LayerNorms stay in float)."""
    import mlx.nn as nn

    return (
        isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.shape[-1] % group_size == 0
    )


def write_mlx_folder(model: WhisperModel, folder: Path) -> Path:
    """Write ``model`` as an mlx-whisper model folder (``config.json`` + ``weights.safetensors``
    in float32) that ``mlx_whisper.load_models.load_model(folder)`` reads without a download."""
    import mlx.core as mx

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        name: mx.array(np.asarray(arr, dtype=np.float32)) for name, arr in mlx_layout(model).items()
    }
    mx.save_safetensors(str(folder / "weights.safetensors"), arrays)
    config = {**dataclasses.asdict(model.dims), "model_type": "whisper"}
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    return folder
