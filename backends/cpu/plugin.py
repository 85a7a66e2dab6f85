"""Entry point of the CPU backend plugin (see pyproject.toml, group ``whisper_runtime``)."""

from runtime.plugins.hookspecs import hookimpl


@hookimpl
def register_backends() -> list:
    from backends.cpu import CpuBackend

    return [CpuBackend()]
