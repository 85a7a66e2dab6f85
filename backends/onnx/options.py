"""The ``backend_options`` a profile may give the onnx backend, validated (unknown keys rejected).

Layout, as in ``profiles/xdna2.toml``::

    [backend_options]
    precision = "fp32"            # taken by the runtime (LoadOptions.precision), not here
    static_shapes = true          # export the encoder with a fixed batch ...
    encoder_batch_size = 1        # ... of this size; the session pads the last batch
    strict_placement = false      # true: fail instead of running nodes on the CPU

    [[backend_options.encoder.providers]]        # tried in order, as ONNX Runtime does
    name = "VitisAIExecutionProvider"
    options = { config_file = "${RYZEN_AI_INSTALLATION_PATH}/...", cache_dir = "~/..." }

    [backend_options.decoder]
    precision = "int8"            # a graph may override the precision
    intra_op_num_threads = 4

String values of provider options and session config entries have ``${VARS}`` and ``~``
expanded; a variable that is not set is left as written and reported as a placement warning.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | float | bool
_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


class ProviderSpec(BaseModel):
    """One execution provider with its provider options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="ONNX Runtime provider name, e.g. 'CPUExecutionProvider'.")
    options: dict[str, Scalar] = Field(default_factory=dict,
                                       description="Provider options; strings expand ${VARS} and ~.")


class GraphOptions(BaseModel):
    """Session settings of one graph (the encoder, or the decoder with its cross K/V graph)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[ProviderSpec] = Field(
        default_factory=lambda: [ProviderSpec(name="CPUExecutionProvider")],
        description="Execution providers in order of preference.")
    precision: Literal["fp32", "fp16", "int8", "bf16"] | None = Field(
        None, description="This graph's precision; None: the profile's precision.")
    intra_op_num_threads: int | None = Field(None, ge=0, description="0/None: ONNX Runtime's default.")
    inter_op_num_threads: int | None = Field(None, ge=0)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    session_config: dict[str, str] = Field(
        default_factory=dict,
        description="SessionOptions config entries, e.g. ep.context_enable / ep.context_file_path.")
    model: str | None = Field(
        None, description="Manifest (.json) of a graph exported beforehand, e.g. an EP-context "
                          "model; None: export from the weights into the cache.")


class OnnxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    static_shapes: bool = Field(False, description="Export the encoder with a fixed batch.")
    encoder_batch_size: int | None = Field(
        None, ge=1, description="The fixed encoder batch when static_shapes (default 1).")
    strict_placement: bool = Field(
        False, description="Fail when a requested provider is missing or leaves nodes to the CPU.")
    check_placement: bool = Field(
        True, description="Count nodes per provider from one profiled warm-up run per graph.")
    cache_dir: str | None = Field(None, description="Where exported graphs are cached.")
    fused_attention: bool = Field(
        False, description="Encoder self-attention as ONNX Runtime's MultiHeadAttention contrib "
                           "op (CPU and CUDA providers; NPU compilers expect standard ops).")
    encoder: GraphOptions = Field(default_factory=GraphOptions)
    decoder: GraphOptions = Field(default_factory=GraphOptions)

    @model_validator(mode="after")
    def _batch_needs_static(self) -> OnnxOptions:
        if self.encoder_batch_size is not None and not self.static_shapes:
            raise ValueError("encoder_batch_size applies to static_shapes = true; set both, or "
                             "neither for a dynamic-batch encoder")
        return self

    @property
    def static_batch(self) -> int | None:
        """The encoder's fixed batch, or None for a dynamic batch."""
        return (self.encoder_batch_size or 1) if self.static_shapes else None


def expand(value: Scalar) -> Scalar:
    """``${VAR}``/``$VAR`` and a leading ``~`` expanded in strings; other values unchanged."""
    if not isinstance(value, str):
        return value
    return os.path.expanduser(os.path.expandvars(value))


def unset_variables(value: Scalar) -> list[str]:
    """Names of variables still in ``value`` after expansion (not set in the environment)."""
    return _UNSET_VAR.findall(expand(value)) if isinstance(value, str) else []
