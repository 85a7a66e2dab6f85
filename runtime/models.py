"""Moved to ``runtime.model.registry``. Kept so a plugin written against the earlier layout
still loads (with a DeprecationWarning)."""

import warnings

from runtime.model.registry import (  # noqa: F401
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    available_models,
    resolve_model,
)

warnings.warn("runtime.models moved to runtime.model.registry", DeprecationWarning, stacklevel=2)
