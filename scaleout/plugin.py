"""The Ray cluster as a plugin: ``runtime transcribe --ray`` and ``runtime serve --ray``.

Importing this module imports no Ray (the runtime loads every plugin when it starts); Ray is
imported by ``available()`` and by the methods that use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from runtime.sdk import Availability, hookimpl

if TYPE_CHECKING:
    from runtime.cluster import Cluster, ClusterJob, ClusterServe
    from runtime.output.jobs import Item, Result

INSTALL = "pip install '.[ray]' (whisper-accel-runtime[ray]: ray[data,serve])"


class RayCluster:
    """Jobs on Ray Data, the server on Ray Serve (see the package docstring)."""

    name = "ray"
    install = INSTALL

    def available(self) -> Availability:
        try:
            import ray
        except ImportError as exc:
            return Availability(False, f"Ray is not installed: {exc}")
        return Availability(True, f"ray {ray.__version__}")

    def results(
        self, address: str | None, job: ClusterJob, items: Sequence[Item]
    ) -> Iterator[Result]:
        from scaleout.ray_job import results

        return results(address, job, items)

    def serve(self, address: str | None, spec: ClusterServe, log_level: str = "info") -> None:
        from scaleout.ray_serve import serve_app

        serve_app(address, spec, log_level)


@hookimpl
def register_clusters() -> list[Cluster]:
    return [RayCluster()]
