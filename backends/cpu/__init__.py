"""The CPU backend: Whisper in numpy. Always available; the fallback of every profile.

Registered through the ``whisper_runtime`` entry-point group like any third-party backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from runtime.backend import Availability, BaseSession, Capabilities, LoadOptions
from runtime.model.weights import WhisperModel

PRECISIONS = {"fp32": np.float32, "fp64": np.float64}
CAPABILITIES = Capabilities(
    batched_encoder=True,
    batched_decoder=True,
    encoder_batch_sizes=None,
    word_timestamps=True,  # the decoder state returns cross-attention scores
    precisions=tuple(PRECISIONS),
    devices=("cpu",),
)


class CpuOptions(BaseModel):
    """Backend options a profile may set for this backend (none yet beyond the common ones)."""

    model_config = ConfigDict(extra="forbid")


class CpuSession(BaseSession):
    def __init__(self, model: WhisperModel, options: LoadOptions) -> None:
        from backends.cpu.model import NumpyWhisper

        CpuOptions(**options.options)
        self.model = model
        self.device = "cpu"
        self.precision = options.precision
        self.capabilities = dataclasses.replace(CAPABILITIES, precisions=(options.precision,))
        self.net = NumpyWhisper(model, PRECISIONS[options.precision])

    def encode(self, mel: np.ndarray) -> np.ndarray:
        return self.net.encode(mel)

    def decoder(self, features: Any):
        from backends.cpu.decoder import NumpyDecoderState

        return NumpyDecoderState(self.net, features)

    def describe(self) -> str:
        return f"cpu backend: numpy {np.__version__}, {self.precision}, encoder and decoder on CPU"


class CpuBackend:
    name = "cpu"
    capabilities = CAPABILITIES

    def available(self) -> Availability:
        return Availability(True, "numpy is always available", device="cpu")

    def load(self, model: WhisperModel, options: LoadOptions) -> CpuSession:
        return CpuSession(model, options)
