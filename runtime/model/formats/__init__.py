"""Readers that turn Whisper weights in the common on-disk formats into one ``WhisperModel``.

A reader is any object with ``name``, ``can_read(path)`` (cheap: looks at file names and at most
a small config file), ``read(path)`` and, optionally, ``expected_files`` (one line saying what it
reads, shown when nothing matches). ``read_model`` asks each in turn; plugins contribute more
through the ``register_model_readers`` hook, and the caller passes them in ``readers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from runtime.errors import ModelNotFoundError
from runtime.model.formats.ct2 import CT2Reader
from runtime.model.formats.hf import HFReader
from runtime.model.formats.mlx import MLXReader
from runtime.model.formats.openai_pt import OpenAIReader
from runtime.model.weights import WhisperModel

__all__ = ["BUILTIN_READERS", "ModelReader", "read_model"]


@runtime_checkable
class ModelReader(Protocol):
    name: str  # short format name, stored as WhisperModel.format

    def can_read(self, path: Path) -> bool:
        """True when ``path`` (a folder or a file) looks like this format; reads nothing large."""
        ...

    def read(self, path: Path) -> WhisperModel:
        """The model at ``path``; raises ModelFormatError when its files are malformed."""
        ...


# Order matters only where two formats share a file name: MLX and Hugging Face folders both hold
# config.json (and may both hold model.safetensors); each reader tells them apart by its keys.
BUILTIN_READERS: tuple[ModelReader, ...] = (CT2Reader(), MLXReader(), HFReader(), OpenAIReader())


def read_model(path: str | Path, readers: Sequence[ModelReader] | None = None) -> WhisperModel:
    """Read the model at ``path`` with the first of ``readers`` (default: the built-in ones)
    that recognizes it.

    Raises ModelNotFoundError when ``path`` does not exist or no reader recognizes its files, and
    ModelFormatError when the recognized files are malformed.
    """
    path = Path(path).expanduser()
    readers = BUILTIN_READERS if readers is None else readers
    if not path.exists():
        raise ModelNotFoundError(f"model path {path} does not exist")
    for reader in readers:
        if reader.can_read(path):
            return reader.read(path)
    found = sorted(p.name for p in path.iterdir())[:8] if path.is_dir() else [path.name]
    expected = "\n".join(
        f"  {r.name}: {getattr(r, 'expected_files', 'see its plugin')}" for r in readers
    )
    raise ModelNotFoundError(
        f"no Whisper model found at {path} (it holds: {', '.join(found) or 'nothing'}). "
        f"Expected one of:\n{expected}"
    )
