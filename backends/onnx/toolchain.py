"""The C compiler this project's CPU kernels are built with (``kernel.py``), found without
running it: the onnxruntime probe reports it, so detection can tell where the ``cpu`` profile's
kernels will be built (and beat ``cpu-bf16``'s OpenVINO encoder) from where they cannot."""

from __future__ import annotations

import os
import shutil


def c_compiler() -> str | None:
    """The path of ``$CC`` (else ``cc``) on the PATH, or None when there is none."""
    return shutil.which(os.environ.get("CC", "cc"))
