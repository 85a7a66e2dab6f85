"""Helpers every reader shares: dimensions from shapes, the expected weight table, sinusoids."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ModelFormatError
from runtime.model.packaged import bundled_tokenizer
from runtime.model.weights import ModelDims

_BLOCK = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a clear ModelFormatError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data


def sinusoids(length: int, channels: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """openai-whisper's encoder positional embedding, shape (length, channels).

    Computed in float64 and rounded once to ``dtype``: in float16 this matches the tables shipped
    in converted checkpoints for all but a few dozen entries (off by one ulp), closer than
    openai-whisper's own float32 computation gets.
    """
    if channels % 2:
        raise ValueError(f"channels must be even, got {channels}")
    increment = math.log(10000.0) / (channels // 2 - 1)  # max timescale 10000
    inv_timescales = np.exp(-increment * np.arange(channels // 2, dtype=np.float64))
    scaled = np.arange(length, dtype=np.float64)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(dtype)


def count_blocks(weights: dict[str, np.ndarray], side: str) -> int:
    """How many ``{side}.blocks.{i}`` there are (side is "encoder" or "decoder")."""
    found = {int(m.group(2)) for n in weights if (m := _BLOCK.match(n)) and m.group(1) == side}
    return max(found) + 1 if found else 0


def dims_from_weights(
    weights: dict[str, np.ndarray], n_audio_head: int, n_text_head: int
) -> ModelDims:
    """ModelDims from openai-named weights; head counts cannot be seen in shapes, so are given."""
    try:
        conv1 = weights["encoder.conv1.weight"]  # (n_audio_state, n_mels, 3)
        embedding = weights["decoder.token_embedding.weight"]  # (n_vocab, n_text_state)
        return ModelDims(
            n_mels=int(conv1.shape[1]),
            n_audio_ctx=int(weights["encoder.positional_embedding"].shape[0]),
            n_audio_state=int(conv1.shape[0]),
            n_audio_head=int(n_audio_head),
            n_audio_layer=count_blocks(weights, "encoder"),
            n_vocab=int(embedding.shape[0]),
            n_text_ctx=int(weights["decoder.positional_embedding"].shape[0]),
            n_text_state=int(embedding.shape[1]),
            n_text_head=int(n_text_head),
            n_text_layer=count_blocks(weights, "decoder"),
        )
    except KeyError as exc:
        raise ModelFormatError(f"weight {exc.args[0]} is missing") from exc


def expected_shapes(dims: ModelDims) -> dict[str, tuple[int, ...]]:
    """Every openai-whisper weight name of a model with ``dims`` and its shape."""
    a, t = dims.n_audio_state, dims.n_text_state
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (a, dims.n_mels, 3),
        "encoder.conv1.bias": (a,),
        "encoder.conv2.weight": (a, a, 3),
        "encoder.conv2.bias": (a,),
        "encoder.positional_embedding": (dims.n_audio_ctx, a),
        "encoder.ln_post.weight": (a,),
        "encoder.ln_post.bias": (a,),
        "decoder.token_embedding.weight": (dims.n_vocab, t),
        "decoder.positional_embedding": (dims.n_text_ctx, t),
        "decoder.ln.weight": (t,),
        "decoder.ln.bias": (t,),
    }
    for side, n_layer, n in (("encoder", dims.n_audio_layer, a), ("decoder", dims.n_text_layer, t)):
        attentions = ("attn", "cross_attn") if side == "decoder" else ("attn",)
        for i in range(n_layer):
            p = f"{side}.blocks.{i}"
            for attn in attentions:
                for proj in ("query", "key", "value", "out"):
                    shapes[f"{p}.{attn}.{proj}.weight"] = (n, n)
                    if proj != "key":  # Whisper's key projection has no bias
                        shapes[f"{p}.{attn}.{proj}.bias"] = (n,)
            for ln in (*(f"{x}_ln" for x in attentions), "mlp_ln"):
                shapes[f"{p}.{ln}.weight"] = (n,)
                shapes[f"{p}.{ln}.bias"] = (n,)
            shapes[f"{p}.mlp.0.weight"] = (4 * n, n)
            shapes[f"{p}.mlp.0.bias"] = (4 * n,)
            shapes[f"{p}.mlp.2.weight"] = (n, 4 * n)
            shapes[f"{p}.mlp.2.bias"] = (n,)
    return shapes


def check_weights(weights: dict[str, np.ndarray], dims: ModelDims, source: Path) -> None:
    """Raise ModelFormatError unless ``weights`` have exactly the names and shapes of ``dims``."""
    expected = expected_shapes(dims)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = [
        f"{n} {tuple(weights[n].shape)} (expected {s})"
        for n, s in expected.items()
        if n in weights and tuple(weights[n].shape) != s
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} weights, e.g. {', '.join(missing[:3])}")
    if extra:
        problems.append(f"{len(extra)} unexpected weights, e.g. {', '.join(extra[:3])}")
    if wrong:
        problems.append(f"wrong shapes: {'; '.join(wrong[:3])}")
    if problems:
        raise ModelFormatError(
            f"{source}: not a complete Whisper model ({dims}): " + "; ".join(problems)
        )


def alignment_heads_from(value: Any) -> tuple[tuple[int, int], ...]:
    """(layer, head) pairs from a JSON list of pairs or an (N, 2) array; () when absent."""
    if value is None:
        return ()
    pairs = np.asarray(value, dtype=np.int64).reshape(-1, 2)
    return tuple((int(layer), int(head)) for layer, head in pairs)


def token_ids(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def fallback_tokenizer(multilingual: bool) -> Path | None:
    """The tokenizer.json of an installed packaged model of the same family, or None.

    Formats that ship no tokenizer.json (OpenAI checkpoints, most MLX folders) share the BPE of
    their family: every English-only model uses one vocabulary, every multilingual one another
    (large-v3 adds one language token, which the tokenizer module must add itself).
    """
    return bundled_tokenizer(multilingual)


def folder_tokenizer(folder: Path, multilingual: bool) -> Path | None:
    """The folder's own tokenizer.json, else the packaged one of the model's family."""
    own = folder / "tokenizer.json"
    return own if own.is_file() else fallback_tokenizer(multilingual)
