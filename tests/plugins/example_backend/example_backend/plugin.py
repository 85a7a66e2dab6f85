"""Implements every hook of the runtime, the way any third-party package would."""

from __future__ import annotations

from pathlib import Path

from runtime.sdk import (
    Availability,
    Backend,
    Capabilities,
    ClusterJob,
    Finding,
    Writer,
    hookimpl,
    worker_runtime,
)


class ExampleBackend:
    name = "example"
    capabilities = Capabilities(
        batched_encoder=True, batched_decoder=False, precisions=("fp32",), devices=("cpu",)
    )

    def available(self) -> Availability:
        return Availability(True, "example backend (numpy underneath)", device="cpu")

    def load(self, model, options):
        from backends.cpu import CpuSession

        return CpuSession(model, options)


def probe_example_marker(root: Path) -> Finding:
    marker = root / "etc" / "example-marker"
    if marker.exists():
        return Finding("example_marker", True, {"path": str(marker)}, "")
    return Finding("example_marker", False, {}, f"no {marker}")


class ShoutWriter(Writer):
    extension = "shout"

    def write(self, result, file) -> None:
        file.write(result.text.upper() + "\n")


class AliasReader:
    """Reads a one-line '*.alias' file naming another model folder."""

    name = "alias"

    def can_read(self, path: Path) -> bool:
        return path.suffix == ".alias"

    def read(self, path: Path):
        from runtime.model.registry import resolve_model  # the runtime's own model lookup

        return resolve_model(path.read_text().strip())


class InlineCluster:
    """A cluster of one: each input transcribed here by a worker-like Runtime of the job's own
    (what a cluster plugin's workers do), results in reverse order (a cluster's are in any)."""

    name = "inline"
    install = "nothing"

    def available(self) -> Availability:
        return Availability(True, "this process")

    def results(self, address, job: ClusterJob, items):
        worker = worker_runtime(job)
        for item in reversed(items):
            try:
                yield item, worker.transcribe(item.source, **job.transcribe_kwargs()), None
            except Exception as exc:
                yield item, None, exc

    def serve(self, address, spec, log_level="info") -> None:
        raise NotImplementedError("the inline cluster serves nothing")


@hookimpl
def register_clusters() -> list:
    return [InlineCluster()]


@hookimpl
def register_backends() -> list[Backend]:
    return [ExampleBackend()]


@hookimpl
def register_probes() -> list:
    return [probe_example_marker]


@hookimpl
def add_profile_dirs() -> list[Path]:
    return [Path(__file__).parent / "profiles"]


@hookimpl
def register_model_readers() -> list:
    return [AliasReader()]


@hookimpl
def register_writers() -> list[type[Writer]]:
    return [ShoutWriter]
