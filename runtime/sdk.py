"""Everything a plugin imports, in one module: ``from runtime.sdk import hookimpl, Backend, ...``.

The names below are the plugin surface the runtime keeps stable; the modules they come from are
the runtime's own business. A backend plugin implements ``Backend`` (a name, ``Capabilities``,
``available()``, ``load()``) and returns a ``Session`` (subclass ``BaseSession`` for the optional
parts) whose ``decoder()`` hands out a ``DecoderState`` (``AttentionState`` for word timestamps).
Probes return ``Finding``s; writers subclass ``Writer``; model readers follow ``ModelReader``;
a cluster (where jobs and the server run) follows ``Cluster`` and gets a ``ClusterJob``.
The hooks and their contracts: ``runtime.plugins.hookspecs``.
"""

from runtime.audio.constants import (
    CHUNK_LENGTH,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_AUDIO_CTX,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
)
from runtime.backend import (
    AttentionState,
    Availability,
    Backend,
    BaseSession,
    Capabilities,
    DecoderState,
    JoinableState,
    LoadOptions,
    Session,
    check_tokens,
)
from runtime.cluster import Cluster, ClusterJob, ClusterServe, Resources, WorkerInputError
from runtime.errors import BackendUnavailableError, ModelFormatError, RuntimeInputError
from runtime.hardware import Detail, Finding, HostInfo
from runtime.job import worker_runtime
from runtime.model.formats import ModelReader
from runtime.model.weights import ModelDims, WhisperModel
from runtime.output.writers import Writer
from runtime.plugins.hookspecs import hookimpl

__all__ = [
    "CHUNK_LENGTH",
    "FRAMES_PER_SECOND",
    "HOP_LENGTH",
    "N_AUDIO_CTX",
    "N_FFT",
    "N_FRAMES",
    "N_SAMPLES",
    "SAMPLE_RATE",
    "AttentionState",
    "JoinableState",
    "Availability",
    "Backend",
    "BaseSession",
    "Capabilities",
    "DecoderState",
    "LoadOptions",
    "Session",
    "check_tokens",
    "Cluster",
    "ClusterJob",
    "ClusterServe",
    "Resources",
    "WorkerInputError",
    "worker_runtime",
    "BackendUnavailableError",
    "ModelFormatError",
    "RuntimeInputError",
    "Detail",
    "Finding",
    "HostInfo",
    "ModelReader",
    "ModelDims",
    "WhisperModel",
    "Writer",
    "hookimpl",
]
