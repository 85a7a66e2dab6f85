"""Weight digests remembered by file. Caches of exported graphs and compiled models key on a
hash of the weights (``WhisperModel.digest``); hashing tiny.en's 75 MB cost 45 ms of every
start-up. A digest is reused while every file it came from keeps its path, size and
modification time (rewriting a file changes the time); anything else hashes again."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from pathlib import Path

from runtime.cache import cache_dir, write_atomic


def stat_key(files: Sequence[Path]) -> str | None:
    """A key for the files as they are now (None when one cannot be read)."""
    h = hashlib.sha256()
    try:
        for path in sorted(Path(f).resolve() for f in files):
            st = path.stat()
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return h.hexdigest()[:32] if files else None


def remembered(key: str | None) -> str | None:
    if key is None:
        return None
    try:
        digest = (cache_dir("digests") / key).read_text().strip()
    except OSError:
        return None
    return digest if len(digest) == 16 and all(c in "0123456789abcdef" for c in digest) else None


def remember(key: str | None, digest: str) -> None:
    """Store ``digest`` for ``key``; a cache that cannot be written only costs a hash later."""
    if key is None:
        return
    with contextlib.suppress(OSError):
        write_atomic(cache_dir("digests") / key, digest.encode())
