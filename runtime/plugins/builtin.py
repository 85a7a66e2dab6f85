"""The core's own contributions (readers, writers, probes, profile directory).

Backends are not here: even the built-in ones come through entry points, as third-party ones do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    from runtime.hardware import Finding, Probe


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


def _named(name: str, probe: Probe) -> Probe:
    """Probes are looked up by name; make sure the table's name travels with the function."""
    from runtime.hardware import set_probe_name

    if getattr(probe, "probe_name", None) != name:
        try:
            set_probe_name(probe, name)
        except AttributeError:  # a bound method or builtin: wrap it

            def wrapped(root: Path, _p: Probe = probe) -> Finding:
                return _p(root)

            set_probe_name(wrapped, name)
            return wrapped
    return probe
