"""Moved to ``runtime.output.writers``; plugins import ``Writer`` from ``runtime.sdk``. Kept so a
plugin written against the earlier layout still loads (with a DeprecationWarning)."""

import warnings

from runtime.output.writers import WRITERS, Writer, segment_text  # noqa: F401

warnings.warn(
    "runtime.writers moved to runtime.output.writers; import Writer from runtime.sdk",
    DeprecationWarning,
    stacklevel=2,
)
