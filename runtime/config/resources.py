"""What one worker asks a cluster for: a profile's ``[resources]`` table.

Its own module so that ``runtime.cluster`` (the cluster contract) and the profiles both use it
without one importing the other's neighbours.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Resources(BaseModel):
    """A profile's ``[resources]``: what one worker running it asks a cluster for (a Ray actor
    of a job, a replica of the server), each holding one loaded model."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    cpus: float = Field(default=1, gt=0, description="CPUs per worker.")
    gpus: float = Field(default=0, ge=0, description="GPUs per worker (0: none).")
