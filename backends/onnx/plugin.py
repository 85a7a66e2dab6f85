"""Entry point of the ONNX Runtime backend plugin (pyproject.toml, group ``whisper_runtime``).

Registering costs nothing: onnxruntime is imported only when the backend or its probe runs.
"""

from runtime.plugins.hookspecs import hookimpl


@hookimpl
def register_backends() -> list:
    from backends.onnx import OnnxBackend

    return [OnnxBackend()]


@hookimpl
def register_probes() -> list:
    from backends.onnx.probe import probe_onnxruntime

    return [probe_onnxruntime]
