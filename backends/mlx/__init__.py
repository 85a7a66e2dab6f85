"""The MLX backend: Whisper on Apple Silicon GPUs (Metal), or on the CPU with Linux's ``mlx[cpu]``.

The network is mlx-whisper's module tree (``backends.mlx.model``) loaded from the project's
in-memory weights; the log-mel frontend, the encoder and the KV-cached decoder all run on the MLX
device, and only logits cross to numpy for the shared decoding loop. MLX is channels-last: the
contract's mel batches (B, n_mels, 3000) are transposed to (B, 3000, n_mels) here, once, and the
conv weights were transposed at load to match. Registered through the ``whisper_runtime``
entry-point group like any third-party backend; this module imports no MLX until it is used.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from backends.mlx.model import GROUP_SIZE, PRECISIONS
from runtime.backend import Availability, BaseSession, Capabilities, LoadOptions
from runtime.model.weights import WhisperModel

INSTALL_HINT = (
    "pip install 'mlx[cpu]' mlx-whisper on Linux, 'mlx' mlx-whisper on macOS; "
    "mlx-whisper declares torch but never imports it: to skip torch, "
    "pip install numba tiktoken more-itertools huggingface_hub scipy tqdm "
    "&& pip install --no-deps mlx-whisper"
)
CAPABILITIES = Capabilities(
    batched_encoder=True,
    batched_decoder=True,
    encoder_batch_sizes=None,
    word_timestamps=True,  # the decoder state returns cross-attention scores
    precisions=tuple(PRECISIONS),
    devices=("gpu", "cpu"),
)
_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class MlxOptions(BaseModel):
    """Backend options a profile may set for this backend."""

    model_config = ConfigDict(extra="forbid")

    compute_dtype: Literal["fp32", "fp16", "bf16"] | None = Field(
        default=None,
        description="activation dtype of int8/int4 models; default fp16 on the GPU, "
        "fp32 on the CPU (MLX's CPU float16 matmuls are slow)",
    )
    group_size: Literal[32, 64, 128] = Field(
        default=GROUP_SIZE, description="inputs sharing one quantization scale (int8/int4)"
    )
    encoder_windows_per_eval: int = Field(
        default=8,
        ge=1,
        description="windows encoded per MLX evaluation: bounds the attention "
        "temporaries (B x heads x 1500 x 1500) of a large batch",
    )


def _device(requested: str | None) -> Any:
    """The MLX device for ``requested`` ("gpu", "cpu", or None/"auto": the GPU when present)."""
    import mlx.core as mx

    has_gpu = mx.is_available(mx.gpu)
    if requested in (None, "auto"):
        return mx.Device(mx.gpu if has_gpu else mx.cpu)
    if requested == "gpu" and not has_gpu:
        raise ValueError(
            "mlx has no GPU (Metal) device here; use device = 'cpu' "
            "(Linux mlx[cpu] builds are CPU only)"
        )
    if requested not in ("gpu", "cpu"):
        raise ValueError(f"mlx devices are 'gpu' and 'cpu', not {requested!r}")
    return mx.Device(mx.gpu if requested == "gpu" else mx.cpu)


def _check_dtype(dtype: Any, device: Any, precision: str) -> None:
    """Fail at load, with the reason, when the device cannot compute in ``dtype`` (bf16)."""
    import mlx.core as mx

    try:
        with mx.stream(device):
            probe = mx.ones((8, 8), dtype=dtype)
            mx.eval(probe @ probe)
    except Exception as exc:  # mlx raises RuntimeError/ValueError for unsupported types
        raise ValueError(f"{precision} is not supported on mlx device {device}: {exc}") from exc


class MlxSession(BaseSession):
    """One model on one MLX device; features and KV caches stay there as mx arrays."""

    def __init__(self, model: WhisperModel, options: LoadOptions) -> None:
        import mlx.core as mx

        from backends.mlx.model import build_whisper

        opts = MlxOptions(**options.options)
        self.model = model
        self.options = opts
        self._device = _device(options.device)
        self.device = "gpu" if self._device.type == mx.gpu else "cpu"
        self.precision = options.precision
        self.capabilities = dataclasses.replace(CAPABILITIES, precisions=(options.precision,))
        dtype_name, self.bits = PRECISIONS[options.precision]
        if dtype_name is None:
            default = "fp16" if self.device == "gpu" else "fp32"
            dtype_name = _DTYPE_NAMES[opts.compute_dtype or default]
        self.dtype = getattr(mx, dtype_name)
        _check_dtype(self.dtype, self._device, options.precision)
        self._logits_weight = None
        with mx.stream(self._device):
            self.net = build_whisper(model, self.dtype, self.bits, opts.group_size)
            if self.device == "cpu" and self.bits is None:
                from backends.mlx.layers import logits_weight, to_host_layout

                to_host_layout(self.net)
                self._logits_weight = logits_weight(self.net)

    def log_mel(self, audio: np.ndarray, padding: int = 0) -> Any:
        import mlx.core as mx

        from backends.mlx.frontend import log_mel

        with mx.stream(self._device):
            return log_mel(audio, self.model.dims.n_mels, padding)

    def mel_windows(self, spans: list[tuple[Any, int, int]]) -> Any:
        import mlx.core as mx

        from backends.mlx.frontend import mel_windows

        with mx.stream(self._device):
            return mel_windows(spans, self.model.dims.n_mels)

    def take(self, features: Any, rows: np.ndarray) -> Any:
        """Rows of encoded features, gathered on the device (re-decoding some windows); host
        (numpy) features, which the decoder also accepts, stay on the host."""
        import mlx.core as mx

        if not isinstance(features, mx.array):
            return np.asarray(features)[np.asarray(rows)]
        with mx.stream(self._device):
            return mx.take(features, mx.array(np.asarray(rows, dtype=np.int32)), axis=0)

    def encode(self, mel: Any) -> Any:
        """mel (B, n_mels, 3000), numpy or mx -> evaluated mx.array (B, n_audio_ctx, d_model)."""
        import mlx.core as mx

        n_mels = self.model.dims.n_mels
        if len(mel.shape) != 3 or mel.shape[1] != n_mels:
            raise ValueError(
                f"encode expects mel windows (B, {n_mels}, frames) as the backend "
                f"contract says (channels-last is applied inside), got {mel.shape}"
            )
        step = self.options.encoder_windows_per_eval
        with mx.stream(self._device):
            if not isinstance(mel, mx.array):
                mel = mx.array(np.asarray(mel, dtype=np.float32))
            x = mel.astype(self.dtype).transpose(0, 2, 1)  # (B, frames, n_mels): channels last
            parts = []
            for i in range(0, x.shape[0], step):
                parts.append(self.net.encoder(x[i : i + step]))
                mx.eval(parts[-1])
            return parts[0] if len(parts) == 1 else mx.concatenate(parts)

    def decoder(self, features: Any):
        from backends.mlx.decoder import MlxDecoderState

        return MlxDecoderState(self.net, features, self._device, self._logits_weight)

    def describe(self) -> str:
        import mlx.core as mx

        where = "Metal GPU" if self.device == "gpu" else "CPU"
        weights = (
            f"{self.bits}-bit weights (groups of {self.options.group_size}), " if self.bits else ""
        )
        # mlx.core's stub (__init__.pyi) lacks __version__, which the module has
        version = mx.__version__  # type: ignore[attr-defined]
        return (
            f"mlx backend: mlx {version}, {self.precision}: {weights}"
            f"{str(self.dtype).split('.')[-1]} compute; log-mel, encoder and decoder on "
            f"the {where}"
        )


class MlxBackend:
    name = "mlx"
    capabilities = CAPABILITIES

    def available(self) -> Availability:
        try:
            import mlx.core as mx
        except (ImportError, OSError) as exc:
            return Availability(False, f"mlx is not importable ({exc}); {INSTALL_HINT}")
        try:
            import mlx_whisper
            import mlx_whisper.whisper
        except (ImportError, OSError) as exc:
            return Availability(False, f"mlx-whisper is not importable ({exc}); {INSTALL_HINT}")
        gpu = mx.is_available(mx.gpu)
        where = "Metal GPU" if gpu else "CPU only (this mlx build has no Metal GPU)"
        version = mx.__version__  # type: ignore[attr-defined]  # missing from mlx.core's stub
        return Availability(
            True,
            f"mlx {version}, mlx-whisper {mlx_whisper.__version__}: {where}",
            device="gpu" if gpu else "cpu",
        )

    def load(self, model: WhisperModel, options: LoadOptions) -> MlxSession:
        return MlxSession(model, options)
