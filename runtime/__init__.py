"""Whisper speech recognition on whatever accelerator a machine has.

from runtime import Runtime
result = Runtime().transcribe("talk.mp3")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Runtime", "Transcription", "Segment"]
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from runtime.api import Runtime
    from runtime.output.results import Segment, Transcription


def __getattr__(name: str) -> Any:
    # Lazy so `import runtime` stays cheap (the CLI's `detect` must not load numpy models).
    if name == "Runtime":
        from runtime.api import Runtime

        return Runtime
    if name in ("Transcription", "Segment"):
        from runtime.output import results

        return getattr(results, name)
    raise AttributeError(name)
