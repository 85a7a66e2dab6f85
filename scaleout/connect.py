"""Connecting to Ray: the running connection, a new local instance, or a cluster's address.

``address=None`` starts a new local instance (its CPUs are this machine's) and shuts it down at
the end; ``"auto"`` joins the cluster this machine belongs to (``ray start``, or ``RAY_ADDRESS``);
``"host:6379"`` a cluster's head; ``"ray://host:10001"`` connects as a Ray Client. A process
already connected (``ray.init`` called before, as a test or a notebook does) is used as it is
and left connected.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator

from runtime.cluster import ClusterUnavailableError
from runtime.errors import one_line

log = logging.getLogger(__name__)


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[None]:
    """Ray connected for the duration of the block (see the module docstring)."""
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        ray.init(
            address=address or "local",
            include_dashboard=False,  # ~1 GiB less per local instance; nothing here reads it
            log_to_driver=False,  # worker logs stay in /tmp/ray/session_*/logs
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a new local instance"
        raise ClusterUnavailableError(f"Ray at {where}: {one_line(str(exc))}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def largest_node_cpus() -> float:
    """The CPUs of the largest alive node (a worker cannot ask for more than one node has)."""
    import ray

    cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    return max(cpus, default=0.0)


def fits(per_worker: float, total: float) -> int:
    """How many workers asking ``per_worker`` of a resource fit in ``total`` (at least 1)."""
    return max(1, math.floor(total / per_worker + 1e-9)) if per_worker > 0 else 1_000_000
