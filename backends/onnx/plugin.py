"""Entry point of the ONNX Runtime backend plugin (pyproject.toml, group ``whisper_runtime``)."""

from runtime.plugins.hookspecs import hookimpl


@hookimpl
def register_backends() -> list:
    from backends.onnx import OnnxBackend

    return [OnnxBackend()]
