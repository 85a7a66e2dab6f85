"""CTranslate2 Whisper models: ``model.bin`` + ``config.json`` + ``tokenizer.json``.

``model.bin`` is parsed here without ctranslate2 (binary versions 4 to 6, as written by
``ct2-transformers-converter``)::

    uint32 binary_version
    string spec name ("WhisperSpec"), uint32 spec revision      (string: uint16 length incl. NUL)
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype id, uint32 n_bytes, bytes
    uint32 n_aliases, then per alias: string alias, string variable

A model may be split into ``model.bin.part1``, ``model.bin.part2``, ... whose concatenation is
``model.bin``; the parts are streamed one after the other, never joined on disk.

Name map (CT2 -> openai-whisper; ``{x}`` = ``/weight``, ``/bias``; layer norms ``gamma``/``beta``
-> ``weight``/``bias``):

    encoder/conv{1,2}{x}                          encoder.conv{1,2}{x}
    encoder/position_encodings/encodings          encoder.positional_embedding
    encoder/layer_norm                            encoder.ln_post
    {enc,dec}/layer_i/self_attention/layer_norm   *.blocks.i.attn_ln
    {enc,dec}/layer_i/self_attention/linear_0     *.blocks.i.attn.{query,key,value} (fused rows)
    {enc,dec}/layer_i/self_attention/linear_1     *.blocks.i.attn.out
    decoder/layer_i/attention/layer_norm          decoder.blocks.i.cross_attn_ln
    decoder/layer_i/attention/linear_0            decoder.blocks.i.cross_attn.query
    decoder/layer_i/attention/linear_1            decoder.blocks.i.cross_attn.{key,value} (fused)
    decoder/layer_i/attention/linear_2            decoder.blocks.i.cross_attn.out
    {enc,dec}/layer_i/ffn/layer_norm              *.blocks.i.mlp_ln
    {enc,dec}/layer_i/ffn/linear_{0,1}            *.blocks.i.mlp.{0,2}
    decoder/embeddings/weight                     decoder.token_embedding.weight
    decoder/position_encodings/encodings          decoder.positional_embedding
    decoder/layer_norm                            decoder.ln
    decoder/projection/weight                     (an alias of the embeddings: tied)

The fused key slice of a bias is dropped: Whisper's key has no bias, CT2 stores zeros there, and a
key bias only shifts each query's scores by a constant, which softmax ignores.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Sequence
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
from runtime.model.formats._safetensors import bfloat16_to_float32
from runtime.model.weights import WhisperModel

# CTranslate2's DataType enum (include/ctranslate2/types.h). BFLOAT16 is widened to float32.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_BFLOAT16 = 5
_GELU = 3  # CTranslate2's ActivationType::GELU
_PART = re.compile(r"^model\.bin\.part(\d+)$")

_LAYER_NORMS = {"self_attention": "attn_ln", "attention": "cross_attn_ln", "ffn": "mlp_ln"}
_LINEARS = {
    "self_attention/linear_0": ("attn.query", "attn.key", "attn.value"),
    "self_attention/linear_1": ("attn.out",),
    "attention/linear_0": ("cross_attn.query",),
    "attention/linear_1": ("cross_attn.key", "cross_attn.value"),
    "attention/linear_2": ("cross_attn.out",),
    "ffn/linear_0": ("mlp.0",),
    "ffn/linear_1": ("mlp.2",),
}
_TOP = {
    "encoder/conv1/weight": "encoder.conv1.weight",
    "encoder/conv1/bias": "encoder.conv1.bias",
    "encoder/conv2/weight": "encoder.conv2.weight",
    "encoder/conv2/bias": "encoder.conv2.bias",
    "encoder/position_encodings/encodings": "encoder.positional_embedding",
    "encoder/layer_norm/gamma": "encoder.ln_post.weight",
    "encoder/layer_norm/beta": "encoder.ln_post.bias",
    "decoder/embeddings/weight": "decoder.token_embedding.weight",
    "decoder/position_encodings/encodings": "decoder.positional_embedding",
    "decoder/layer_norm/gamma": "decoder.ln.weight",
    "decoder/layer_norm/beta": "decoder.ln.bias",
}


class _Stream:
    """Reads the concatenation of ``files`` front to back, as if they were one file."""

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)
        self.total = sum(f.stat().st_size for f in self.files)
        self.offset = 0
        self._index = 0
        self._handle = open(self.files[0], "rb")  # noqa: SIM115 - held across reads, closed in close()
        # one file is mapped, not read: its arrays are views of the page cache, read from disk
        # only when used (with exported graphs cached, the weights are not needed at all)
        self._map: mmap.mmap | None = None
        if len(self.files) == 1 and self.total:
            self._map = mmap.mmap(self._handle.fileno(), 0, access=mmap.ACCESS_READ)

    def read(self, n: int) -> bytearray | memoryview:
        if self._map is not None:
            if self.offset + n > self.total:
                raise ModelFormatError(
                    f"{self.files[0]} is truncated: needed {n} bytes at offset {self.offset}, "
                    f"but the file holds {self.total} bytes; if the model is split into parts, "
                    "pass them all"
                )
            view = memoryview(self._map)[self.offset : self.offset + n]
            self.offset += n
            return view
        out = bytearray(n)
        view, filled = memoryview(out), 0
        while filled < n:
            got = self._handle.readinto(view[filled:])
            if got:
                filled += got
            elif self._index + 1 < len(self.files):
                self._handle.close()
                self._index += 1
                self._handle = open(self.files[self._index], "rb")  # noqa: SIM115 - as above
            else:
                raise ModelFormatError(
                    f"{_describe(self.files)} is truncated: needed {n} bytes at offset "
                    f"{self.offset + filled}, but the file(s) hold {self.total} bytes"
                    + (
                        ""
                        if len(self.files) > 1
                        else "; if the model is split into parts, pass them all"
                    )
                )
        self.offset += n
        return out

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        raw = bytes(self.read(self.unpack("H")))
        return raw.rstrip(b"\0").decode("utf-8", errors="replace")

    def close(self) -> None:
        self._handle.close()


def _describe(files: Sequence[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more parts)"


def read_variables(files: Sequence[Path]) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 Whisper ``model.bin`` (or its parts, in order), aliases
    resolved; arrays keep their stored dtype (bfloat16 is widened to float32), scalars are 0-d."""
    try:
        stream = _Stream(files)
    except OSError as exc:
        raise ModelFormatError(f"cannot read CTranslate2 model file: {exc}") from exc
    try:
        version = stream.unpack("I")
        if not 4 <= version <= 6:
            raise ModelFormatError(
                f"{_describe(files)}: CTranslate2 binary version {version} is not supported "
                "(expected 4 to 6); is this a model.bin, with its parts in order?"
            )
        spec, _revision = stream.string(), stream.unpack("I")
        if spec != "WhisperSpec":
            raise ModelFormatError(
                f"{_describe(files)} holds a CTranslate2 {spec!r}, not a Whisper model"
            )
        variables: dict[str, np.ndarray] = {}
        for _ in range(stream.unpack("I")):
            name = stream.string()
            shape = tuple(stream.unpack("I") for _ in range(stream.unpack("B")))
            type_id, n_bytes = stream.unpack("B"), stream.unpack("I")
            if type_id not in _DTYPES:
                raise ModelFormatError(f"{_describe(files)}: {name} has unknown dtype id {type_id}")
            arr = np.frombuffer(stream.read(n_bytes), dtype=_DTYPES[type_id])
            arr = bfloat16_to_float32(arr) if type_id == _BFLOAT16 else arr
            variables[name] = arr.reshape(shape)
        for _ in range(stream.unpack("I")):
            alias, target = stream.string(), stream.string()
            variables[alias] = variables[target]
        if stream.offset != stream.total:
            raise ModelFormatError(
                f"{_describe(files)}: {stream.total - stream.offset} unexpected bytes after the "
                "model; are the parts complete and in order?"
            )
    except OSError as exc:
        raise ModelFormatError(f"cannot read {_describe(files)}: {exc}") from exc
    finally:
        stream.close()
    return variables


def _dequantize(variables: dict[str, np.ndarray]) -> None:
    """Replace int8/int16 ``P/weight`` that have a ``P/weight_scale`` by float32 weights."""
    for scale_name in [n for n in variables if n.endswith("/weight_scale")]:
        weight_name = scale_name[: -len("_scale")]
        # CT2 stores round(w * scale), the scale per output row (int8) or one scalar (int16).
        scale = variables.pop(scale_name).astype(np.float32)
        weight = variables[weight_name].astype(np.float32)
        variables[weight_name] = weight / (scale[:, None] if scale.ndim == 1 else scale)


def to_openai(variables: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """openai-whisper-named weights from CT2 variables (see the module docstring's table)."""
    remaining = dict(variables)
    projection = remaining.pop("decoder/projection/weight", None)
    embedding = remaining.get("decoder/embeddings/weight")
    if (
        projection is not None
        and projection is not embedding
        and (embedding is None or not np.array_equal(projection, embedding))
    ):
        raise ModelFormatError(f"{source}: output projection is not tied to the token embedding")
    _dequantize(remaining)
    weights = {new: remaining.pop(old) for old, new in _TOP.items() if old in remaining}
    layer_prefixes = sorted(
        {m.group(0) for n in remaining if (m := re.match(r"^\w+/layer_\d+", n))}
    )
    for prefix in layer_prefixes:
        side, index = prefix.split("/layer_")
        block = f"{side}.blocks.{index}"
        for ct2_name, ln in _LAYER_NORMS.items():
            if f"{prefix}/{ct2_name}/layer_norm/gamma" in remaining:
                weights[f"{block}.{ln}.weight"] = remaining.pop(
                    f"{prefix}/{ct2_name}/layer_norm/gamma"
                )
                weights[f"{block}.{ln}.bias"] = remaining.pop(
                    f"{prefix}/{ct2_name}/layer_norm/beta"
                )
        for ct2_name, names in _LINEARS.items():
            if f"{prefix}/{ct2_name}/weight" not in remaining:
                continue
            weight = remaining.pop(f"{prefix}/{ct2_name}/weight")
            bias = remaining.pop(f"{prefix}/{ct2_name}/bias", None)
            rows = weight.shape[0] // len(names)
            for k, name in enumerate(names):
                weights[f"{block}.{name}.weight"] = weight[k * rows : (k + 1) * rows]
                if bias is not None and not name.endswith(".key"):
                    weights[f"{block}.{name}.bias"] = bias[k * rows : (k + 1) * rows]
    leftovers = sorted(n for n, v in remaining.items() if v.ndim > 0)
    if leftovers:
        raise ModelFormatError(
            f"{source}: CTranslate2 variables not understood: {', '.join(leftovers[:5])}"
        )
    return weights


def _check_flags(variables: dict[str, np.ndarray], source: Path) -> None:
    activation = variables.get("decoder/activation")
    if activation is not None and int(activation) != _GELU:
        raise ModelFormatError(
            f"{source}: activation id {int(activation)} is not GELU; not a Whisper model"
        )
    pre_norm = variables.get("decoder/pre_norm")
    if pre_norm is not None and not int(pre_norm):
        raise ModelFormatError(f"{source}: post-norm layers are not Whisper's")


def model_files_in(folder: Path) -> list[Path]:
    """``model.bin``, else ``model.bin.part1..N`` in part order; [] when neither is there."""
    if (folder / "model.bin").is_file():
        return [folder / "model.bin"]
    parts = [
        (int(m.group(1)), p) for p in folder.glob("model.bin.part*") if (m := _PART.match(p.name))
    ]
    return [p for _, p in sorted(parts)]


def read_ct2(
    folder: Path, model_files: Sequence[Path] | None = None, name: str | None = None
) -> WhisperModel:
    """Read a CTranslate2 Whisper model whose config and tokenizer live in ``folder``.

    ``model_files`` are the files whose concatenation is model.bin (default: found in ``folder``),
    so a model split across packages is read from where each part was installed.
    """
    files = list(model_files) if model_files is not None else model_files_in(folder)
    if not files:
        raise ModelFormatError(f"{folder} has no model.bin (nor model.bin.part1, ...)")
    variables = read_variables(files)
    _check_flags(variables, files[0])
    weights = to_openai(variables, files[0])
    encoder_heads = variables.get("encoder/num_heads")
    decoder_heads = variables.get("decoder/num_heads")
    if encoder_heads is None or decoder_heads is None:
        raise ModelFormatError(
            f"{_describe(files)}: encoder/num_heads or decoder/num_heads is missing"
        )
    dims = dims_from_weights(weights, int(encoder_heads), int(decoder_heads))
    check_weights(weights, dims, files[0])
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    return WhisperModel(
        name=name or folder.name,
        dims=dims,
        weights=weights,
        source=folder,
        format="ct2",
        tokenizer_path=folder_tokenizer(folder, dims.is_multilingual),
        alignment_heads=alignment_heads_from(config.get("alignment_heads")),
        suppress_tokens=token_ids(config.get("suppress_ids")),
        suppress_tokens_begin=token_ids(config.get("suppress_ids_begin")),
    )


class CT2Reader:
    name = "ct2"
    expected_files = (
        "model.bin (or model.bin.part1, part2, ...) with config.json and tokenizer.json"
    )

    def can_read(self, path: Path) -> bool:
        folder = path if path.is_dir() else path.parent
        return bool(model_files_in(folder)) and (path.is_dir() or path.name.startswith("model.bin"))

    def read(self, path: Path) -> WhisperModel:
        return read_ct2(path if path.is_dir() else path.parent)
