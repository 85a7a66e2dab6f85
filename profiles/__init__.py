"""The hardware profiles shipped with the runtime, as TOML data files in this folder.

A package (not a bare folder) so the files install with the runtime as package data and are
found the same way from a checkout and from a wheel.
"""

from __future__ import annotations

from pathlib import Path


def directory() -> Path:
    """The folder holding the built-in profile files (*.toml)."""
    return Path(__file__).resolve().parent
