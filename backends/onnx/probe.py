"""The onnxruntime probe: which build is installed, its execution providers and EP devices.

Registered by the onnx plugin (``register_probes``), so the core knows nothing of onnxruntime.
Known plugin EP packages (``onnxruntime-qnn`` 2.x, ``onnxruntime-ep-openvino``) are registered
first, so their providers and devices are listed too. Several distributions that ship the same
``onnxruntime`` module (``onnxruntime``, ``onnxruntime-gpu``, ``onnxruntime-openvino``, Ryzen AI's
build) overwrite each other's files, which silently removes a vendor's provider: the probe names
them and the fix. On a fake machine (tests) the facts come from ``fake/onnxruntime.json``.
"""

from __future__ import annotations

import sys
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

from backends.onnx.toolchain import c_compiler
from runtime.hardware import Detail, Finding, HostInfo, set_probe_name

ROOT = Path("/")
INSTALL_HINT = "pip install 'whisper-accel-runtime[cpu]' (or [qnn], [openvino], [cuda])"


def probe_onnxruntime(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """onnxruntime's version, build, providers (built in and plugin) and EP devices."""
    host = host or HostInfo.detect(root)
    try:
        facts = host.library("onnxruntime")
        if facts is None:
            facts = {**_real_onnxruntime(), "c_compiler": c_compiler()}
    except ImportError as exc:
        reason = f"{exc}; {INSTALL_HINT}"
        return Finding("onnxruntime", False, {"providers": [], "providers_reason": reason}, reason)
    except Exception as exc:  # noqa: BLE001 - a broken wheel raises OSError, RuntimeError, ...
        reason = f"onnxruntime failed to import: {type(exc).__name__}: {exc}"
        return Finding("onnxruntime", False, {"providers": [], "providers_reason": reason}, reason)
    build = str(facts.get("build", "onnxruntime"))
    details: dict[str, Detail] = {
        "version": str(facts.get("version", "unknown")),
        "build": build,
        "providers": list(facts.get("providers", [])),
        "ep_devices": list(facts.get("ep_devices", [])),
    }
    for key in ("plugins", "distributions"):
        if facts.get(key):
            details[key] = list(facts[key])
    compiler = facts.get("c_compiler")  # a fake machine says; else None: none found
    details["c_compiler"] = compiler is not None
    details["c_compiler_reason"] = (
        f"{compiler} builds the cpu profile's kernels"
        if compiler
        else "no C compiler ($CC, else cc) to build the cpu profile's kernels"
    )
    conflict = conflict_reason(list(facts.get("distributions", [])), build)
    if conflict:
        details["conflict"] = True
        details["conflict_reason"] = conflict
    return Finding("onnxruntime", True, details)


set_probe_name(probe_onnxruntime, "onnxruntime")


def _real_onnxruntime() -> dict[str, Any]:
    """What onnxruntime reports, as a fake tree's ``onnxruntime.json`` holds it."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"onnxruntime is not installed ({exc})") from exc
    from backends.onnx import eps

    plugins = eps.register_known_plugins()
    try:
        from onnxruntime.capi.build_and_package_info import package_name as build
    except ImportError:
        build = "onnxruntime"
    return {
        "version": str(getattr(ort, "__version__", "unknown")),
        "build": build,
        "providers": eps.available_providers(),
        "ep_devices": [eps.describe_device(d) for d in eps.ep_devices()],
        "plugins": [f"{p.name} ({p.module} {p.version})".replace(" )", ")") for p in plugins]
        + [f"{name} failed: {why}" for name, why in eps.plugin_errors().items()],
        "distributions": module_owners(),
    }


# Distributions that install the ``onnxruntime`` module itself (plugin packages such as
# onnxruntime-qnn 2.x or onnxruntime-ep-openvino install their own modules and never conflict).
def module_owners() -> list[str]:
    """'name version' of every installed distribution that ships the onnxruntime module. Only
    the ``onnxruntime*`` / ``ort_nightly*`` metadata folders on ``sys.path`` are read: parsing
    every installed distribution's metadata cost 0.1 s of each start-up."""
    owners = []
    for folder in _candidate_metadata():
        dist = Distribution.at(folder)
        name = (dist.metadata["Name"] or "").lower()
        if not (name.startswith("onnxruntime") or name.startswith("ort-nightly")):
            continue
        files = dist.files or []
        if any(str(f).replace("\\", "/") == "onnxruntime/__init__.py" for f in files):
            owners.append(f"{name} {dist.version}")
    return sorted(set(owners))


def _candidate_metadata() -> list[Path]:
    found: list[Path] = []
    for entry in sys.path:
        root = Path(entry or ".")
        if not root.is_dir():
            continue
        for pattern in (
            "onnxruntime*.dist-info",
            "ort_nightly*.dist-info",
            "onnxruntime*.egg-info",
        ):
            found += root.glob(pattern)
    return found


def conflict_reason(owners: list[str], build: str) -> str | None:
    """One line naming distributions that overwrite each other's onnxruntime module, and the
    fix, or None when at most one is installed."""
    if len(owners) < 2:
        return None
    names = [o.split()[0] for o in owners]
    keep = build if build in names else next((n for n in names if n != "onnxruntime"), names[0])
    return (
        f"{' and '.join(owners)} all install the onnxruntime module and overwrite each "
        f"other's files (the one running now is {build}); keep one: pip uninstall -y "
        f"{' '.join(names)} && pip install {keep}"
    )
