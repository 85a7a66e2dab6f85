"""Batch jobs and the server on a cluster: the contract a cluster plugin implements.

The core imports no cluster framework. A plugin registers a ``Cluster`` through the
``register_clusters`` hook (the built-in one, ``scaleout``, runs on Ray); ``runtime transcribe
--ray`` and ``runtime serve --ray`` find it by its name. A cluster replaces only *where* the work
runs: a job's inputs, output layout, writes, resume and summary stay the local job's
(``runtime.output.jobs``), and the server's app is the local server's app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runtime.config.resources import Resources
from runtime.errors import BackendUnavailableError, RuntimeInputError, WhisperRuntimeError

if TYPE_CHECKING:
    from runtime.backend import Availability
    from runtime.config.settings import Settings
    from runtime.output.jobs import Item, Result


class ClusterUnavailableError(BackendUnavailableError):
    """A cluster that cannot be used from here: its plugin or framework is not installed, or its
    address does not answer."""


class WorkerInputError(WhisperRuntimeError):
    """An input that failed on a worker: the one line the worker reported (the local job's
    wording, naming the input as the job was given it)."""


@dataclass(frozen=True)
class ClusterJob:
    """What every worker needs to transcribe an input exactly as the local job would: the
    settings (model, profile, decoding), the options given, the resources to ask for, and the
    plugin's own options (``--ray-option KEY=VALUE``)."""

    settings: Settings
    model: str
    resources: Resources
    language: str | None = None
    task: str = "transcribe"
    batch_size: int | None = None
    chunking: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # TranscribeOptions fields given
    options: dict[str, Any] = field(default_factory=dict)

    def transcribe_kwargs(self) -> dict[str, Any]:
        """The keywords ``Runtime.transcribe_options`` and ``Engine.submit`` take."""
        return {"language": self.language, "task": self.task, **self.overrides}


@dataclass(frozen=True)
class ClusterServe:
    """The server on a cluster: the local server's settings (models, limits, API key, host and
    port), how many replicas, each replica's resources, and the plugin's own options."""

    settings: Settings
    resources: Resources
    replicas: int | str | None = None  # None: the plugin's default; "auto": autoscaling
    options: dict[str, Any] = field(default_factory=dict)


class Cluster(Protocol):
    """A place to run jobs and the server other than this process."""

    name: str  # the command-line flag: "ray" is --ray
    install: str  # how to install what it needs, for the error when it is missing

    def available(self) -> Availability:
        """Whether its framework can be imported here, and if not, why."""
        ...

    def results(
        self, address: str | None, job: ClusterJob, items: Sequence[Item]
    ) -> Iterator[Result]:
        """Each item once, with its transcription or its error, in any order, as it is done."""
        ...

    def serve(self, address: str | None, spec: ClusterServe, log_level: str = "info") -> None:
        """Run the server's app on the cluster until SIGINT/SIGTERM."""
        ...


def find_cluster(clusters: Mapping[str, Cluster], name: str) -> Cluster:
    """The registered cluster called ``name`` (``Plugins.clusters()``), ready to use, or one
    line saying what to install."""
    if name not in clusters:
        known = ", ".join(sorted(clusters)) or "none"
        raise ClusterUnavailableError(
            f"--{name}: no cluster plugin {name!r} is registered (registered: {known})"
        )
    cluster = clusters[name]
    availability = cluster.available()
    if not availability:
        raise ClusterUnavailableError(f"--{name} needs {cluster.install} ({availability.reason})")
    return cluster


def parse_options(
    pairs: Sequence[str], known: Mapping[str, str] | None = None, flag: str = "--ray-option"
) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (given with ``flag``) as a dict; a VALUE that reads as JSON is taken
    as JSON (numbers, ``true``, objects), anything else as a string. With ``known`` (key -> what
    it does), other keys are refused, naming the known ones."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RuntimeInputError(f"{flag} {pair!r}: expected KEY=VALUE")
        key = key.strip()
        if known is not None and key not in known:
            choices = "; ".join(f"{k} ({what})" for k, what in known.items())
            raise RuntimeInputError(f"{flag} {key}: unknown option; known: {choices}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
