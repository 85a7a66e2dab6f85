"""The one in-memory form every model format is read into and every backend loads.

Weights use openai-whisper's state-dict names and layouts (PyTorch conventions: linear weights are
``(out_features, in_features)``, conv1d weights are ``(out_channels, in_channels, kernel)``), so a
backend written against openai-whisper or mlx-whisper's module tree can load them directly:

    encoder.conv1.weight / .bias              (n_audio_state, n_mels, 3)
    encoder.conv2.weight / .bias              (n_audio_state, n_audio_state, 3)
    encoder.positional_embedding              (n_audio_ctx, n_audio_state)
    encoder.blocks.{i}.attn.{query,key,value,out}.weight / .bias   (key has no bias)
    encoder.blocks.{i}.attn_ln.weight / .bias
    encoder.blocks.{i}.mlp.0.weight / .bias   (4 * n_state, n_state)
    encoder.blocks.{i}.mlp.2.weight / .bias   (n_state, 4 * n_state)
    encoder.blocks.{i}.mlp_ln.weight / .bias
    encoder.ln_post.weight / .bias
    decoder.token_embedding.weight            (n_vocab, n_text_state)
    decoder.positional_embedding              (n_text_ctx, n_text_state)
    decoder.blocks.{i}.{attn,cross_attn}.{query,key,value,out}.weight / .bias
    decoder.blocks.{i}.{attn_ln,cross_attn_ln,mlp_ln}.weight / .bias
    decoder.blocks.{i}.mlp.{0,2}.weight / .bias
    decoder.ln.weight / .bias
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ModelDims:
    """Whisper's architecture numbers, named as in openai-whisper's ``ModelDimensions``."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def is_multilingual(self) -> bool:
        # English-only vocabularies have 51864 entries; multilingual ones 51865 or more.
        return self.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        # large-v3 added one language (Cantonese), which shows as one more vocabulary entry.
        return self.n_vocab - 51765 - int(self.is_multilingual)


@dataclass
class WhisperModel:
    """A model as read from disk: dimensions, named numpy arrays and where its tokenizer lives.

    Arrays keep the dtype they were stored in (often float16); each backend casts what it needs.
    """

    name: str
    dims: ModelDims
    weights: dict[str, np.ndarray]
    source: Path
    format: str
    tokenizer_path: Path | None = None
    # (decoder layer, head) pairs whose cross-attention tracks time; empty when unknown.
    alignment_heads: tuple[tuple[int, int], ...] = ()
    # Token ids suppressed at every step and at the first step (from the model's config, if any).
    suppress_tokens: tuple[int, ...] | None = None
    suppress_tokens_begin: tuple[int, ...] | None = None
    _digest: str | None = field(default=None, repr=False)

    @property
    def is_multilingual(self) -> bool:
        return self.dims.is_multilingual

    def word_alignment_heads(self) -> tuple[tuple[int, int], ...]:
        """The (layer, head) pairs word timestamps read: the model's own when its files name
        them, else every head of the last half of the decoder layers (openai-whisper's default
        before heads were tuned)."""
        if self.alignment_heads:
            return tuple((int(layer), int(head)) for layer, head in self.alignment_heads)
        d = self.dims
        return tuple(
            (layer, head)
            for layer in range(d.n_text_layer // 2, d.n_text_layer)
            for head in range(d.n_text_head)
        )

    def without_weights(self) -> WhisperModel:
        """This model without its arrays (its digest kept): what a session keeps once its
        backend holds the weights in its own form (graphs, device arrays)."""
        return dataclasses.replace(self, weights={}, _digest=self.digest())

    def digest(self) -> str:
        """A stable hash of the weights: caches (exported graphs, compiled NPU models) key on it."""
        if self._digest is None:
            h = hashlib.sha256(repr(self.dims).encode())
            for name in sorted(self.weights):
                arr = np.ascontiguousarray(self.weights[name])
                h.update(name.encode())
                h.update(str(arr.dtype).encode())
                h.update(arr.data.cast("B"))  # the buffer, uncopied
            self._digest = h.hexdigest()[:16]
        return self._digest
