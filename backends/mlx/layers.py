"""Layers for MLX's CPU device, where Linux's mlx[cpu] multiplies through netlib's reference BLAS.

That BLAS runs ``x @ w`` on a contiguous (in, out) matrix about twice as fast as ``x @ w.T``
(``nn.Linear``'s form), so on the CPU float weights are transposed once at load. Metal's GEMMs do
not care, and quantized layers use MLX's own kernels, so neither is touched.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn


class HostLinear(nn.Module):
    """``nn.Linear`` with its weight stored pre-transposed as ``weight_t`` (in, out)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight_t = mx.contiguous(linear.weight.T)
        if "bias" in linear:
            self.bias = linear.bias

    def __call__(self, x: mx.array) -> mx.array:
        if "bias" in self:
            return mx.addmm(self.bias, x, self.weight_t)
        return x @ self.weight_t


def to_host_layout(net: Any) -> None:
    """Swap every float ``nn.Linear`` of mlx-whisper's blocks for a ``HostLinear``."""
    for block in [*net.encoder.blocks, *net.decoder.blocks]:
        owners = [block] + [a for a in (block.attn, block.cross_attn) if a is not None]
        for owner in owners:
            for name, child in list(owner.children().items()):
                if type(child) is nn.Linear:
                    setattr(owner, name, HostLinear(child))
    mx.eval(net.parameters())


def logits_weight(net: Any) -> mx.array | None:
    """The token embedding as a contiguous (D, V) matrix for the logits on the CPU, or None
    when the embedding is quantized (its own ``as_linear`` is used then)."""
    embedding = net.decoder.token_embedding
    if type(embedding) is not nn.Embedding:
        return None
    return mx.contiguous(embedding.weight.T)
