"""The JSON manifest written next to every exported graph, and the only way the backend finds names.

A manifest says which graph a file holds (encoder, cross_kv, decoder), its precision, its static
batch (or none), the source model's digest, and every input and output with its *role*: the
backend asks ``manifest.input("mel")`` or ``manifest.inputs_of("self_k")`` (ordered by layer),
never sniffs substrings of tensor names. A graph from elsewhere (an EP-context model compiled
for an NPU, say) works as long as its manifest maps the roles.

Roles by graph::

    encoder   in: mel (B, n_mels, 3000) float32          out: features (B, n_audio_ctx, D) float32
    cross_kv  in: features                                out: cross_k[layer] (B, H, dh, S),
                                                               cross_v[layer] (B, H, S, dh)
    decoder   in: tokens (B, T) int64, lengths (B,) int64 (each row's tokens so far),
                  positions (P,) int64, self_k[layer] (B, H, dh, C), self_v[layer] (B, H, C, dh)
                  (C = n_text_ctx; a row's columns past its length are masked),
                  cross_k[layer], cross_v[layer]
              out: logits (B, P, V) float32, new_k[layer] (B, H, dh, T), new_v[layer]
                   (B, H, T, dh) (the caller writes them into the caches at each row's length),
                   and optionally cross_qk (B, n alignment heads, T, S) float32:
                   cross-attention scores before the softmax of the (layer, head) pairs in
                   ``details["alignment_heads"]``
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
GRAPHS = ("encoder", "cross_kv", "decoder")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its ONNX name, what it is for, dtype and shape."""

    name: str
    role: str
    dtype: str  # numpy dtype name: "float32", "float16", "int64"
    shape: tuple[int | str, ...]  # a string is a symbolic (dynamic) dimension
    layer: int | None = None  # for per-layer caches


@dataclass(frozen=True)
class Manifest:
    graph: str  # one of GRAPHS
    file: str  # the .onnx file, relative to the manifest's folder
    precision: str  # "fp32", "fp16", "int8"
    model_name: str
    model_digest: str  # WhisperModel.digest() of the weights it was built from
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    static_batch: int | None = None  # None: any batch
    opset: int = 17
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # e.g. quantization settings
    format_version: int = FORMAT_VERSION

    # -- lookups by role ------------------------------------------------------------------------
    def input(self, role: str) -> TensorSpec:
        return _one(self.inputs, role, self)

    def output(self, role: str) -> TensorSpec:
        return _one(self.outputs, role, self)

    def inputs_of(self, role: str) -> list[TensorSpec]:
        return sorted((t for t in self.inputs if t.role == role), key=lambda t: t.layer or 0)

    def outputs_of(self, role: str) -> list[TensorSpec]:
        return sorted((t for t in self.outputs if t.role == role), key=lambda t: t.layer or 0)

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"manifest format {data.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; re-export the graph"
            )
        inputs, outputs = (
            tuple(TensorSpec(**{**t, "shape": tuple(t["shape"])}) for t in data[k])
            for k in ("inputs", "outputs")
        )
        rest = {k: v for k, v in data.items() if k not in ("inputs", "outputs")}
        rest["notes"] = tuple(rest.get("notes", ()))
        return cls(**rest, inputs=inputs, outputs=outputs)

    def write(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a manifest (it marks a finished export)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable graph manifest: {exc}") from exc


def _one(specs: tuple[TensorSpec, ...], role: str, manifest: Manifest) -> TensorSpec:
    found = [t for t in specs if t.role == role]
    if len(found) != 1:
        raise ValueError(
            f"{manifest.graph} manifest ({manifest.file}) has {len(found)} tensors "
            f"with role {role!r}, expected one"
        )
    return found[0]
