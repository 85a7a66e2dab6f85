"""``runtime serve``: an OpenAI-compatible transcription server.

``POST /v1/audio/transcriptions`` and ``/v1/audio/translations`` take OpenAI's multipart
fields; every request is submitted to one ``Engine`` per model, whose scheduler batches the
chunks of all requests in flight together. Modules: ``upload`` (streaming multipart with a
size limit), ``request`` (field validation), ``responses`` (OpenAI's formats), ``errors``
(OpenAI's error shape), ``middleware`` (API key, counters), ``state``, ``app``, ``serve``.
"""

from runtime.server.serve import build_state, serve

__all__ = ["build_state", "serve"]
