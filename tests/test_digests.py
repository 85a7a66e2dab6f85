"""Weight digests remembered by file (``runtime.model.digests``) and CTranslate2 files read as
mapped memory: the same digest as hashing the arrays, and a rewritten file hashes again."""

from __future__ import annotations

import os
import shutil

import numpy as np

from runtime.model import digests
from runtime.model.registry import clear_model_cache, resolve_model


def test_a_digest_is_kept_while_its_files_are_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights")
    key = digests.stat_key([f])
    assert digests.remembered(key) is None
    digests.remember(key, "0123456789abcdef")
    assert digests.remembered(digests.stat_key([f])) == "0123456789abcdef"
    os.utime(f, ns=(1, 1))  # rewritten: another time
    assert digests.remembered(digests.stat_key([f])) is None
    assert digests.stat_key([tmp_path / "missing.bin"]) is None
    (tmp_path / "cache" / "whisper-runtime" / "digests" / key).write_text("not a digest")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns))
    assert digests.remembered(key) is None  # a damaged entry is ignored
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_model_folder_read_twice_gets_the_hashed_digest(tiny_model, tmp_path, monkeypatch):
    """A copy of tiny.en's folder, read (mapped), hashed and remembered, then read again: the
    remembered digest equals the arrays' hash, and the mapped arrays equal the packaged ones."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_model.tokenizer_path.parent, folder)
    clear_model_cache()
    first = resolve_model(folder)
    expected = first.digest()
    assert list((tmp_path / "cache" / "whisper-runtime" / "digests").iterdir())
    name = "decoder.token_embedding.weight"
    np.testing.assert_array_equal(first.weights[name], tiny_model.weights[name])
    del first
    clear_model_cache()
    again = resolve_model(folder)
    assert again._digest == expected  # remembered, not hashed
    again._digest = None
    assert again.digest() == expected
