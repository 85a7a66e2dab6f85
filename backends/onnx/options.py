"""The ``backend_options`` a profile may give the onnx backend, validated (unknown keys rejected).

Layout, as in ``profiles/xdna2.toml``::

    [backend_options]
    precision = "fp32"            # taken by the runtime (LoadOptions.precision), not here
    static_shapes = true          # export the encoder with a fixed batch ...
    encoder_batch_size = 1        # ... of this size; the session pads the last batch
    strict_placement = false      # true: fail instead of running nodes on the CPU

    [[backend_options.encoder.providers]]        # tried in order, as ONNX Runtime does
    name = "QNNExecutionProvider"
    device_types = ["NPU"]        # a plugin EP: attach its EP devices of these types
    options = { backend_type = "htp", enable_htp_fp16_precision = "1" }
    emulation = { device_types = ["CPU"], options = { soc_model = "60", htp_arch = "73" } }

    [backend_options.decoder]
    precision = "int8"            # a graph may override the precision
    intra_op_num_threads = 4

String values of provider options and session config entries have ``${VARS}`` and ``~``
expanded (``${PROFILE_DIR}`` is the profile file's folder); a variable that is not set is left
as written and reported as a placement warning. Provider option values are strings or numbers,
never TOML booleans: providers spell their flags differently ("1" for QNN, "True" for OpenVINO).

``emulation`` says how a provider runs on a stand-in for its hardware (``runtime transcribe
--emulate``): options merged over ``options`` and the EP device types to attach instead; the rest
of the profile stays exactly as on the device.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool
_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
DeviceType = Literal["NPU", "GPU", "CPU"]


class ProviderEmulation(BaseModel):
    """How a provider runs where its hardware is absent but its EP loads (``--emulate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    options: dict[str, Scalar] = Field(
        default_factory=dict, description="Provider options merged over the real ones."
    )
    device_types: list[DeviceType] | None = Field(
        default=None,
        description="EP device types to attach instead of the provider's device_types.",
    )

    @field_validator("options")
    @classmethod
    def _strings(cls, options: dict[str, Scalar]) -> dict[str, Scalar]:
        return _no_booleans(options)


class ProviderSpec(BaseModel):
    """One execution provider with its provider options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="ONNX Runtime provider name, e.g. 'CPUExecutionProvider'.")
    options: dict[str, Scalar] = Field(
        default_factory=dict, description="Provider options; strings expand ${VARS} and ~."
    )
    plugin: str | None = Field(
        default=None,
        description="Python package shipping this EP as a plugin library (get_library_path); "
        "None: the known package for this EP name, if any.",
    )
    device_types: list[DeviceType] = Field(
        default_factory=list,
        description="A plugin EP's devices to attach, by hardware type; "
        "empty: every device it lists.",
    )
    emulation: ProviderEmulation | None = Field(
        default=None,
        description="Options and device types on a stand-in for the hardware (--emulate).",
    )

    @field_validator("options")
    @classmethod
    def _strings(cls, options: dict[str, Scalar]) -> dict[str, Scalar]:
        return _no_booleans(options)

    def emulated(self) -> ProviderSpec:
        """This provider as it runs under ``--emulate`` (unchanged without an emulation)."""
        if self.emulation is None:
            return self
        types = self.emulation.device_types
        return self.model_copy(
            update={
                "options": {**self.options, **self.emulation.options},
                "device_types": self.device_types if types is None else types,
            }
        )


class GraphOptions(BaseModel):
    """Session settings of one graph (the encoder, or the decoder with its cross K/V graph)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[ProviderSpec] = Field(
        default_factory=lambda: [ProviderSpec(name="CPUExecutionProvider")],
        description="Execution providers in order of preference.",
    )
    precision: Literal["fp32", "fp16", "int8", "bf16"] | None = Field(
        default=None, description="This graph's precision; None: the profile's precision."
    )
    intra_op_num_threads: int | None = Field(
        default=None, ge=0, description="0/None: ONNX Runtime's default."
    )
    inter_op_num_threads: int | None = Field(default=None, ge=0)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    cpu_memory_arena: bool = Field(
        default=True,
        description="ONNX Runtime's CPU arena: keeps the largest buffers a run needed for the "
        "next run (faster) instead of returning them (less resident memory between runs).",
    )
    session_config: dict[str, str] = Field(
        default_factory=dict,
        description="SessionOptions config entries, e.g. ep.context_enable / ep.context_file_path.",
    )
    model: str | None = Field(
        default=None,
        description="Manifest (.json) of a graph exported beforehand, e.g. an EP-context "
        "model; None: export from the weights into the cache.",
    )


class OnnxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    static_shapes: bool = Field(default=False, description="Export the encoder with a fixed batch.")
    encoder_batch_size: int | None = Field(
        default=None, ge=1, description="The fixed encoder batch when static_shapes (default 1)."
    )
    strict_placement: bool = Field(
        default=False,
        description="Fail when a requested provider is missing or leaves nodes to the CPU.",
    )
    check_placement: bool = Field(
        default=True,
        description="Count nodes per provider from one profiled warm-up run per graph.",
    )
    cache_dir: str | None = Field(default=None, description="Where exported graphs are cached.")
    fused_attention: bool = Field(
        default=False,
        description="Encoder self-attention as ONNX Runtime's MultiHeadAttention contrib "
        "op (CPU and CUDA providers; NPU compilers expect standard ops).",
    )
    cross_attention_kernel: bool = Field(
        default=False,
        description="Decoder cross-attention over float16 keys and values by this project's "
        "CPU kernel (built with the system's C compiler on first use; AVX-512), the decoder "
        "graph cut around it; falls back to the graph's own attention where it cannot run.",
    )
    cross_kv_int8: bool = Field(
        default=False,
        description="With cross_attention_kernel: the decoder's cross-attention keys and values "
        "held as int8 (a scale per key and value row of each head) instead of float16: half the "
        "bytes a decoder step reads and half the memory a row holds.",
    )
    encoder_attention_kernel: bool = Field(
        default=False,
        description="Encoder self-attention in bfloat16 by this project's CPU kernel (built "
        "with the system's C compiler on first use; AVX512_BF16), the fused encoder graph cut "
        "around it; falls back to the graph's own attention where it cannot run.",
    )
    logits_kernel: bool = Field(
        default=False,
        description="The decoder's logits over its int8 weights by this project's CPU kernel "
        "(AVX512_VNNI; the same arithmetic as ONNX Runtime's MatMulNBits at accuracy level 4), "
        "with cross_attention_kernel, whose decoder parts it ends; else the graph's.",
    )
    io_binding: bool | None = Field(
        default=None,
        description="Decoder steps through ONNX Runtime's I/O binding, the cross-attention "
        "keys and values kept on the session's device while the rows stay the same; None: "
        "when the decoder runs on a device (CUDA), true: also on the CPU, false: never.",
    )
    encoder: GraphOptions = Field(default_factory=GraphOptions)
    decoder: GraphOptions = Field(default_factory=GraphOptions)
    emulate: bool = Field(
        default=False,
        description="Run providers as their ``emulation`` says (set by "
        "the runtime for --emulate, not in profiles).",
    )

    @model_validator(mode="after")
    def _batch_needs_static(self) -> OnnxOptions:
        if self.encoder_batch_size is not None and not self.static_shapes:
            raise ValueError(
                "encoder_batch_size applies to static_shapes = true; set both, or "
                "neither for a dynamic-batch encoder"
            )
        return self

    @property
    def static_batch(self) -> int | None:
        """The encoder's fixed batch, or None for a dynamic batch."""
        return (self.encoder_batch_size or 1) if self.static_shapes else None


def expand(value: Scalar, variables: dict[str, str] | None = None) -> Scalar:
    """``${VAR}``/``$VAR`` (``variables`` first, then the environment) and a leading ``~``
    expanded in strings; other values unchanged."""
    if not isinstance(value, str):
        return value
    for name, replacement in (variables or {}).items():
        value = value.replace("${" + name + "}", replacement)
    return os.path.expanduser(os.path.expandvars(value))


def unset_variables(value: Scalar, variables: dict[str, str] | None = None) -> list[str]:
    """Names of variables still in ``value`` after expansion (not set in the environment)."""
    return _UNSET_VAR.findall(str(expand(value, variables))) if isinstance(value, str) else []


def _no_booleans(options: dict[str, Scalar]) -> dict[str, Scalar]:
    flags = [key for key, value in options.items() if isinstance(value, bool)]
    if flags:
        raise ValueError(
            f'{", ".join(flags)}: write provider options as strings ("1", "True", '
            "as the provider documents them), not TOML booleans"
        )
    return options
