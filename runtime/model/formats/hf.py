"""Hugging Face transformers Whisper folders: ``config.json`` + ``model.safetensors`` (or shards
listed in ``model.safetensors.index.json``, or a zip-format ``pytorch_model.bin``), with
``tokenizer.json`` and ``generation_config.json`` (alignment heads, suppressed tokens) if present.

``hf_name`` and ``openai_name`` are each other's inverse and are the only place the two naming
schemes meet; ``read_hf`` and ``write_hf`` both use them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from runtime.errors import ModelFormatError
from runtime.model.formats._common import (
    alignment_heads_from,
    check_weights,
    dims_from_weights,
    folder_tokenizer,
    read_json,
    token_ids,
)
from runtime.model.formats._safetensors import read_safetensors, write_safetensors
from runtime.model.weights import WhisperModel

# Whole names first (no .weight/.bias suffix on the openai side), then module paths.
_TOP = {
    "encoder.positional_embedding": "model.encoder.embed_positions.weight",
    "decoder.positional_embedding": "model.decoder.embed_positions.weight",
    "encoder.conv1": "model.encoder.conv1",
    "encoder.conv2": "model.encoder.conv2",
    "encoder.ln_post": "model.encoder.layer_norm",
    "decoder.token_embedding": "model.decoder.embed_tokens",
    "decoder.ln": "model.decoder.layer_norm",
}
_BLOCK = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "cross_attn.query": "encoder_attn.q_proj",
    "cross_attn.key": "encoder_attn.k_proj",
    "cross_attn.value": "encoder_attn.v_proj",
    "cross_attn.out": "encoder_attn.out_proj",
    "cross_attn_ln": "encoder_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_TOP_BACK = {v: k for k, v in _TOP.items()}
_BLOCK_BACK = {v: k for k, v in _BLOCK.items()}
_OPENAI_BLOCK = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)$")
_HF_BLOCK = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")
_HF_ONLY = ("proj_out.weight",)  # the output projection, tied to the token embedding


def _translate(
    name: str, top: dict[str, str], block: dict[str, str], pattern: re.Pattern, fmt: str
) -> str:
    if name in top:
        return top[name]
    module, _, suffix = name.rpartition(".")
    if module in top:
        return f"{top[module]}.{suffix}"
    m = pattern.match(module)
    if m and m.group(3) in block:
        return fmt.format(m.group(1), m.group(2), block[m.group(3)]) + f".{suffix}"
    raise KeyError(name)


def hf_name(openai_name: str) -> str:
    """The transformers name of an openai-whisper weight; KeyError if it is not Whisper's.

    ``encoder.blocks.0.attn.query.weight`` -> ``model.encoder.layers.0.self_attn.q_proj.weight``
    """
    return _translate(openai_name, _TOP, _BLOCK, _OPENAI_BLOCK, "model.{}.layers.{}.{}")


def openai_name(hf_name: str) -> str:
    """The inverse of ``hf_name``; raises KeyError for names that are not Whisper's."""
    return _translate(hf_name, _TOP_BACK, _BLOCK_BACK, _HF_BLOCK, "{}.blocks.{}.{}")


def _load_state(folder: Path) -> dict[str, np.ndarray]:
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        return read_safetensors(folder / "model.safetensors")
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        if not shards:
            raise ModelFormatError(f"{index} lists no shards in its weight_map")
        state: dict[str, np.ndarray] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise ModelFormatError(f"{folder}: shard {shard} listed in {index.name} is missing")
            state.update(read_safetensors(folder / shard))
        return state
    from runtime.model.formats.openai_pt import load_torch_zip

    state = load_torch_zip(folder / "pytorch_model.bin")
    if not isinstance(state, dict):
        raise ModelFormatError(f"{folder}/pytorch_model.bin does not hold a state dict")
    return state


def to_openai(state: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """openai-named weights from an HF state dict (with or without the ``model.`` prefix)."""
    weights, unknown = {}, []
    for name, arr in state.items():
        full = f"model.{name}" if name.startswith(("encoder.", "decoder.")) else name
        if full in _HF_ONLY:
            continue
        try:
            new = openai_name(full)
        except KeyError:
            unknown.append(name)
            continue
        if not new.endswith("attn.key.bias"):  # softmax ignores a key bias; Whisper has none
            weights[new] = arr
    if unknown:
        raise ModelFormatError(
            f"{source}: weights that are not Whisper's: {', '.join(sorted(unknown)[:5])}"
        )
    proj = state.get("proj_out.weight")
    embedding = weights.get("decoder.token_embedding.weight")
    if proj is not None and (embedding is None or not np.array_equal(proj, embedding)):
        raise ModelFormatError(f"{source}: proj_out is not tied to the token embedding")
    return weights


def read_hf(folder: Path) -> WhisperModel:
    config = read_json(folder / "config.json")
    generation = (
        read_json(folder / "generation_config.json")
        if (folder / "generation_config.json").is_file()
        else {}
    )
    weights = to_openai(_load_state(folder), folder)
    try:
        dims = dims_from_weights(
            weights, config["encoder_attention_heads"], config["decoder_attention_heads"]
        )
    except KeyError as exc:
        raise ModelFormatError(f"{folder}/config.json lacks {exc}") from exc
    check_weights(weights, dims, folder)
    settings = {**config, **generation}  # generation_config.json is the newer home of these
    return WhisperModel(
        name=folder.name,
        dims=dims,
        weights=weights,
        source=folder,
        format="hf",
        tokenizer_path=folder_tokenizer(folder, dims.is_multilingual),
        alignment_heads=alignment_heads_from(settings.get("alignment_heads")),
        suppress_tokens=token_ids(settings.get("suppress_tokens")),
        suppress_tokens_begin=token_ids(settings.get("begin_suppress_tokens")),
    )


def write_hf(model: WhisperModel, folder: Path) -> Path:
    """Write ``model`` as a transformers ``WhisperForConditionalGeneration`` folder."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {hf_name(n): a for n, a in model.weights.items()}
    write_safetensors(folder / "model.safetensors", state, {"format": "pt"})
    d = model.dims
    sot = 50257 + int(d.is_multilingual)  # <|startoftranscript|>
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": d.n_vocab,
        "num_mel_bins": d.n_mels,
        "d_model": d.n_audio_state,
        "encoder_layers": d.n_audio_layer,
        "encoder_attention_heads": d.n_audio_head,
        "encoder_ffn_dim": 4 * d.n_audio_state,
        "decoder_layers": d.n_text_layer,
        "decoder_attention_heads": d.n_text_head,
        "decoder_ffn_dim": 4 * d.n_text_state,
        "max_source_positions": d.n_audio_ctx,
        "max_target_positions": d.n_text_ctx,
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "bos_token_id": 50257,
        "eos_token_id": 50256,
        "pad_token_id": 50256,
        "decoder_start_token_id": sot,
        "torch_dtype": str(model.weights["decoder.token_embedding.weight"].dtype),
    }
    generation: dict[str, object] = {"decoder_start_token_id": sot, "eos_token_id": 50256}
    if model.alignment_heads:
        generation["alignment_heads"] = [list(p) for p in model.alignment_heads]
    if model.suppress_tokens is not None:
        generation["suppress_tokens"] = list(model.suppress_tokens)
    if model.suppress_tokens_begin is not None:
        generation["begin_suppress_tokens"] = list(model.suppress_tokens_begin)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if model.tokenizer_path is not None and model.tokenizer_path.is_file():
        shutil.copyfile(model.tokenizer_path, folder / "tokenizer.json")
    return folder


class HFReader:
    name = "hf"
    expected_files = "config.json (d_model, encoder_layers, ...) with model.safetensors (or shards)"

    def can_read(self, path: Path) -> bool:
        if not (path.is_dir() and (path / "config.json").is_file()):
            return False
        weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        if not any((path / f).is_file() for f in weights):
            return False
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return "d_model" in config and "num_mel_bins" in config

    def read(self, path: Path) -> WhisperModel:
        return read_hf(path)
