"""The hooks a plugin may implement. Each returns a list; results of all plugins are merged,
built-ins first. What a plugin imports to implement them: ``runtime.sdk``.

Register a plugin through the ``whisper_runtime`` entry-point group in its ``pyproject.toml``
(the built-in backends use exactly that path)::

    [project.entry-points.whisper_runtime]
    mybackend = "my_package.plugin"      # a module with @hookimpl functions
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the contracts, for type checkers; importing them here would cost every plugin
    from runtime.backend import Backend
    from runtime.cluster import Cluster
    from runtime.hardware.probes import Probe
    from runtime.model.formats import ModelReader
    from runtime.output.writers import Writer

PROJECT = "whisper_runtime"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backends() -> list[Backend]:
    """Return backend instances. Names must be unique (a second one is ignored, with a warning);
    an instance must be cheap to create: import heavy frameworks in ``available()``/``load()``."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_probes() -> list[Probe]:
    """Return hardware probes: callables ``probe(root: Path) -> Finding`` with a ``probe_name``
    attribute (or a ``__name__`` starting with ``probe_``). Probes must be cheap and import
    nothing heavy at import time; they report why they found nothing instead of raising."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def add_profile_dirs() -> list[Path]:
    """Return directories of hardware-profile TOML files to load."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_model_readers() -> list[ModelReader]:
    """Return model-format readers (``name``, ``can_read(path)``, ``read(path) -> WhisperModel``),
    tried in order after the built-in ones."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_writers() -> list[type[Writer]]:
    """Return ``Writer`` subclasses (each with an ``extension``); an extension already taken
    replaces the earlier writer."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_clusters() -> list[Cluster]:
    """Return clusters (``runtime.cluster.Cluster``): a ``name`` that is also the command-line
    flag (``ray`` is ``--ray``), ``available()`` with the reason when not, ``results()`` running a
    batch job's transcriptions on the cluster and ``serve()`` running the server's app there.
    Import the cluster framework only inside those methods: the core never imports it."""
    raise NotImplementedError  # a specification: plugins implement it
