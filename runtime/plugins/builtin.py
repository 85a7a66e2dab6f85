"""The core's own contributions (readers, writers, probes, profile directory).

Backends are not here: even the built-in ones come through entry points, as third-party ones do.
"""

from __future__ import annotations

from typing import Any

from runtime.plugins.hookspecs import hookimpl


@hookimpl
def register_model_readers() -> list[Any]:
    from runtime.model.formats import BUILTIN_READERS

    return list(BUILTIN_READERS)


@hookimpl
def register_writers() -> list[Any]:
    from runtime.output.writers import WRITERS

    return list(WRITERS.values())


@hookimpl
def register_probes() -> list[Any]:
    from runtime.hardware import BUILTIN_PROBES

    return [_named(name, probe) for name, probe in BUILTIN_PROBES.items()]


@hookimpl
def add_profile_dirs() -> list[Any]:
    from runtime.config.profiles import builtin_profiles_dir

    return [builtin_profiles_dir()]


def _named(name: str, probe):
    """Probes are looked up by name; make sure the table's name travels with the function."""
    if getattr(probe, "probe_name", None) != name:
        try:
            probe.probe_name = name
        except AttributeError:  # a bound method or builtin: wrap it

            def wrapped(root, _p=probe):
                return _p(root)

            wrapped.probe_name = name
            return wrapped
    return probe
