"""Settings: one pydantic-settings tree, built once at the entry point and passed down.

Sources, highest first: values given in code or by CLI flags, ``RUNTIME_*`` environment
variables (nested with ``__``, e.g. ``RUNTIME_DECODING__BEAM_SIZE=5``), then a TOML file
(``RUNTIME_CONFIG`` or ``~/.config/whisper-runtime/config.toml``), then the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from runtime.model.packaged import DEFAULT_MODEL
from runtime.pipeline.options import BatchOptions, TranscribeOptions

CONFIG_ENV = "RUNTIME_CONFIG"
DEFAULT_CONFIG = Path("~/.config/whisper-runtime/config.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


_OPTIONS = TranscribeOptions()  # the defaults live there; these sections repeat none of them
_BATCH = BatchOptions()


class DecodingSettings(_Section):
    beam_size: int | None = Field(
        default=_OPTIONS.beam_size, ge=1, description="Beam width at temperature 0; None = greedy."
    )
    best_of: int | None = Field(
        default=_OPTIONS.best_of, ge=1, description="Samples per window when falling back to t > 0."
    )
    temperatures: tuple[float, ...] = Field(
        default=_OPTIONS.temperatures, description="Temperature fallback ladder."
    )
    condition_on_previous_text: bool = Field(
        default=_OPTIONS.condition_on_previous_text,
        description="Prompt each window with the text before it.",
    )


class BatchSettings(_Section):
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description=f"Windows per batch; None = the profile's, else {_BATCH.batch_size}.",
    )
    decoder: Literal["continuous", "batched", "sequential"] | None = Field(
        default=None, description="Force the decoder mode; None = the profile's and the backend's."
    )
    chunking: Literal["vad", "fixed"] = Field(
        default=_BATCH.chunking,
        description="Cut chunks at silences found by the VAD, or plain 30 s windows.",
    )


class ServerSettings(_Section):
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind; 0.0.0.0 exposes the server to the network.",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    api_key: SecretStr | None = Field(
        default=None,
        description="Require 'Authorization: Bearer <key>' on /v1 and /stats; None = open.",
    )
    models: list[str] = Field(
        default_factory=list,
        description=(
            "Models to serve (short names or folders); the first also answers 'whisper-1'. "
            "Empty = the top-level model."
        ),
    )
    max_upload_mb: float = Field(
        default=25.0, gt=0, description="Largest accepted upload (OpenAI's limit is 25 MB)."
    )
    max_queue: int = Field(
        default=64, ge=1, description="Requests in flight per model; more get 503."
    )
    max_wait_ms: float = Field(
        default=50.0, ge=0, description="A batch forms when its oldest chunk waited this long."
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, description="A request unfinished after this gets 504."
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="Chunks per batch; None = the profile's."
    )
    cross_request: bool = Field(
        default=True, description="Batch chunks of concurrent requests together."
    )
    max_live_sessions: int = Field(
        default=16, ge=1, description="Realtime WebSocket sessions open at once; more are refused."
    )
    live_session_max_s: float = Field(
        default=3600.0, gt=0, description="A Realtime session ends after this (OpenAI: 60 min)."
    )
    live_max_speed: float = Field(
        default=4.0,
        gt=0,
        description="Audio a Realtime client may send per second of wall time (beyond 30 s).",
    )
    live_partial_interval_ms: int = Field(
        default=200, ge=50, description="A live turn's partial re-decode at most this often."
    )
    live_partials_in_flight: int = Field(
        default=1,
        ge=0,
        description="Partial re-decodes in flight per model across live sessions (finals first).",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RUNTIME_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    model: str = Field(
        default=DEFAULT_MODEL, description="Model short name (tiny.en, base) or folder path."
    )
    profile: str = Field(default="auto", description="Hardware profile name, or 'auto' to detect.")
    backend: str | None = Field(
        default=None, description="Force a backend, bypassing profile selection."
    )
    precision: str | None = Field(
        default=None, description="Override the profile's precision (fp32, fp16, int8...)."
    )
    strict: bool = Field(
        default=False, description="Fail instead of falling back when a profile cannot run."
    )
    emulate: bool = Field(
        default=False,
        description=(
            "Run the profile on the stand-in its [emulation] names (QNN HTP simulator, OpenVINO's "
            "CPU device) where its hardware is absent."
        ),
    )
    profile_dirs: list[Path] = Field(default_factory=list, description="Extra profile folders.")
    hardware_root: Path = Field(
        default=Path("/"), description="Where /sys, /proc, /dev are read (tests)."
    )
    decoding: DecodingSettings = Field(default_factory=DecodingSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_path())


def config_path() -> Path | None:
    """The TOML config file, if any: $RUNTIME_CONFIG, else the default location when it exists."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    default = DEFAULT_CONFIG.expanduser()
    return default if default.exists() else None
