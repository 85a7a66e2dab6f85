"""The plugin manager facade: one typed method per hook, so core code never calls ``pm.hook.*``.

A ``Plugins`` object is built per ``Runtime`` (no module-level manager, nothing loaded on import).
Entry points of the ``whisper_runtime`` group are loaded once, in its constructor; a plugin that
fails to import is recorded with its error and skipped, never fatal. ``RUNTIME_BLOCK_PLUGINS``
(comma-separated entry-point names) keeps plugins from loading at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from runtime.plugins import hookspecs
from runtime.plugins.hookspecs import PROJECT

if TYPE_CHECKING:
    from runtime.backend import Backend
    from runtime.cluster import Cluster
    from runtime.hardware.probes import Probe
    from runtime.model.formats import ModelReader
    from runtime.output.writers import Writer

log = logging.getLogger(__name__)
BLOCK_ENV = "RUNTIME_BLOCK_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point <value>", or "object"
    error: str | None = None  # why it failed to load; None when loaded
    blocked: bool = False


def _blocked_names(blocked: Iterable[str] | None) -> set[str]:
    names = set(blocked or ())
    names |= {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}
    return names


class Plugins:
    def __init__(
        self,
        load_entry_points: bool = True,
        blocked: Iterable[str] | None = None,
        extra: Iterable[Any] = (),
    ) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.info: list[PluginInfo] = []
        from runtime.plugins import builtin

        self._pm.register(builtin, name="builtin")
        self.info.append(PluginInfo("builtin", "builtin"))
        if load_entry_points:
            self._load_entry_points(_blocked_names(blocked))
        for plugin in extra:
            self._pm.register(plugin)
            self.info.append(PluginInfo(getattr(plugin, "__name__", repr(plugin)), "object"))

    def _load_entry_points(self, blocked: set[str]) -> None:
        for ep in entry_points(group=PROJECT):
            if ep.name in blocked:
                self.info.append(PluginInfo(ep.name, f"entry point {ep.value}", blocked=True))
                continue
            try:
                module = ep.load()
                self._pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin is reported, not fatal
                log.warning("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
                self.info.append(
                    PluginInfo(
                        ep.name, f"entry point {ep.value}", error=f"{type(exc).__name__}: {exc}"
                    )
                )
                continue
            self.info.append(PluginInfo(ep.name, f"entry point {ep.value}"))

    @property
    def errors(self) -> list[PluginInfo]:
        return [p for p in self.info if p.error]

    def _collect(self, hook: str) -> list[Any]:
        # pluggy calls the most recently registered plugin first; reverse so built-ins come first
        results = getattr(self._pm.hook, hook)()
        return [item for items in reversed(results) for item in (items or [])]

    # -- one method per hook --------------------------------------------------------------------
    def backends(self) -> dict[str, Backend]:
        found: dict[str, Backend] = {}
        for backend in self._collect("register_backends"):
            if backend.name in found:
                log.warning("backend %r registered twice; keeping the first", backend.name)
                continue
            found[backend.name] = backend
        return found

    def probes(self) -> list[Probe]:
        return self._collect("register_probes")

    def profile_dirs(self) -> list[Path]:
        return [Path(p) for p in self._collect("add_profile_dirs")]

    def model_readers(self) -> list[ModelReader]:
        return self._collect("register_model_readers")

    def writers(self) -> dict[str, type[Writer]]:
        return {w.extension: w for w in self._collect("register_writers")}

    def clusters(self) -> dict[str, Cluster]:
        found: dict[str, Cluster] = {}
        for cluster in self._collect("register_clusters"):
            found.setdefault(cluster.name, cluster)  # the first registered wins, as for backends
        return found
