from __future__ import annotations

import platform

import pytest

from runtime.memory import release_free_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is a glibc function")
def test_free_memory_is_given_back_on_glibc():
    assert release_free_memory() is True
    assert release_free_memory() is True  # cached lookup, callable again


def test_release_never_raises_elsewhere(monkeypatch):
    import runtime.memory as memory

    monkeypatch.setattr(memory, "_trim", lambda: None)
    assert memory.release_free_memory() is False
