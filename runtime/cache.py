"""The runtime's caches on disk: where they live, and how a file goes into one (whole or not
at all, so a concurrent reader never sees half of it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/whisper-runtime/<parts>`` (``~/.cache`` without the variable)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().joinpath("whisper-runtime", *parts)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a ``.part`` file renamed into place; raises OSError
    (with no ``.part`` left behind) when the cache cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as f:
            part = Path(f.name)
            f.write(data)
        os.replace(part, path)
    except OSError:
        if part is not None:
            part.unlink(missing_ok=True)
        raise
