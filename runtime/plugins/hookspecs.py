"""The hooks a plugin may implement. Each returns a list; results of all plugins are merged.

Register a plugin through the ``whisper_runtime`` entry-point group in its ``pyproject.toml``
(the built-in backends use exactly that path)::

    [project.entry-points.whisper_runtime]
    mybackend = "my_package.plugin"      # a module with @hookimpl functions
"""

from __future__ import annotations

import pluggy

PROJECT = "whisper_runtime"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backends() -> list:
    """Return backend instances (``runtime.backend.Backend``). Names must be unique; the
    instance must be cheap to create: import heavy frameworks in ``available()``/``load()``."""


@hookspec
def register_probes() -> list:
    """Return hardware probes: callables ``probe(root: Path) -> Finding`` with a ``probe_name``
    attribute (or a ``__name__`` starting with ``probe_``). Probes must be cheap and import
    nothing heavy; they report why they found nothing instead of raising."""


@hookspec
def add_profile_dirs() -> list:
    """Return directories (``pathlib.Path``) of hardware-profile TOML files to load."""


@hookspec
def register_model_readers() -> list:
    """Return model-format readers (``name``, ``can_read(path)``, ``read(path) -> WhisperModel``),
    tried in order after the built-in ones."""


@hookspec
def register_writers() -> list:
    """Return output writer classes (``runtime.output.writers.Writer`` subclasses with an
    ``extension``); an extension already taken replaces the earlier writer."""
