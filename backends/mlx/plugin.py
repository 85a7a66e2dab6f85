"""Entry point of the MLX backend plugin (``whisper_runtime``: ``mlx = "backends.mlx.plugin"``).

Registering costs nothing: the backend imports MLX only in ``available()`` and ``load()``, and
its probe only when it runs, so a machine without MLX still lists it, with the reason it cannot
run.
"""

from runtime.plugins.hookspecs import hookimpl


@hookimpl
def register_backends() -> list:
    from backends.mlx import MlxBackend

    return [MlxBackend()]


@hookimpl
def register_probes() -> list:
    from backends.mlx.probe import probe_mlx

    return [probe_mlx]
