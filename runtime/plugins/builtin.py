"""The core's own contributions (readers, writers, probes, profile directory).

Backends are not here: even the built-in ones come through entry points, as third-party ones do.
"""

from __future__ import annotations

from runtime.plugins.hookspecs import hookimpl


@hookimpl
def register_model_readers() -> list:
    from runtime.formats import BUILTIN_READERS

    return list(BUILTIN_READERS)


@hookimpl
def register_writers() -> list:
    from runtime.writers import WRITERS

    return list(WRITERS.values())
