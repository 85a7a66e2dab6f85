"""Execution providers of two kinds: built into the ``onnxruntime`` module, or plugin libraries.

Built-in providers (CPU; CUDA in ``onnxruntime-gpu``; OpenVINO in ``onnxruntime-openvino``;
VitisAI in Ryzen AI's build) are listed by ``get_available_providers()`` and attached to a
session by name. Plugin providers (``onnxruntime-qnn`` 2.x, ``onnxruntime-ep-openvino``) are
shared libraries that must first be registered with ``register_execution_provider_library``;
they then offer *EP devices* (``get_ep_devices()``), and a session attaches them with
``SessionOptions.add_provider_for_devices``. A plugin package is a Python module with
``get_library_path()`` and ``get_ep_names()``.

ONNX Runtime keeps registrations for the whole process (registering a name twice fails), so
this module records what it registered, once per process, behind a lock.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
CPU = "CPUExecutionProvider"

# Plugin packages looked for when listing providers (a profile may name others: ``plugin``).
KNOWN_PLUGINS = {
    "QNNExecutionProvider": "onnxruntime_qnn",
    "OpenVINOExecutionProvider": "onnxruntime_ep_openvino",
}


@dataclass(frozen=True)
class PluginEp:
    """A plugin EP library registered in this process."""

    name: str  # e.g. "QNNExecutionProvider"
    module: str  # the Python package that ships it, e.g. "onnxruntime_qnn"
    library: str  # path of the shared library
    version: str  # the package's version ("" when it does not say)


_lock = threading.Lock()
_registered: dict[str, PluginEp] = {}
_failed: dict[str, str] = {}  # name -> why registration failed (kept, shown by the probe)


def register_plugin(name: str, module: str | None = None) -> PluginEp | None:
    """Register EP ``name`` from its plugin package (``module``, else the known one) once per
    process. None when the package is not installed, when the running onnxruntime already has
    the EP built in, or when registration failed (``plugin_errors()`` says why)."""
    import onnxruntime as ort

    module = module or KNOWN_PLUGINS.get(name)
    with _lock:
        if name in _registered:
            return _registered[name]
        if module is None or name in _failed or name in ort.get_available_providers():
            return None
        try:
            package = importlib.import_module(module)
        except ImportError:
            return None
        try:
            library = str(package.get_library_path())
            with native_stdout_to_log():
                ort.register_execution_provider_library(name, library)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never fatal
            _failed[name] = f"{module}: {type(exc).__name__}: {str(exc).strip()[:300]}"
            log.warning("could not register the %s plugin: %s", name, _failed[name])
            return None
        version = str(getattr(package, "__version__", "") or _dist_version(module))
        _registered[name] = PluginEp(name, module, library, version)
        return _registered[name]


def register_known_plugins() -> list[PluginEp]:
    """Register every known plugin package that is installed (for listing providers)."""
    return [p for name in KNOWN_PLUGINS if (p := register_plugin(name)) is not None]


def plugin(name: str) -> PluginEp | None:
    """The registered plugin EP called ``name``, if any."""
    with _lock:
        return _registered.get(name)


def plugin_errors() -> dict[str, str]:
    with _lock:
        return dict(_failed)


def available_providers() -> list[str]:
    """Built-in providers of this onnxruntime build, then registered plugin EPs."""
    import onnxruntime as ort

    names = list(ort.get_available_providers())
    with _lock:
        names += [n for n in _registered if n not in names]
    return names


def ep_devices(name: str | None = None) -> list[Any]:
    """``onnxruntime.get_ep_devices()`` (of one EP when ``name`` is given); [] before 1.22."""
    import onnxruntime as ort

    get = getattr(ort, "get_ep_devices", None)
    devices = list(get()) if get else []
    return [d for d in devices if name is None or d.ep_name == name]


def device_type(device: Any) -> str:
    """'NPU', 'GPU' or 'CPU': the hardware type of an EP device."""
    return str(getattr(getattr(device.device, "type", None), "name", "?")).upper()


def describe_device(device: Any) -> str:
    """One line per EP device, e.g. 'QNNExecutionProvider on NPU (Qualcomm)'."""
    vendor = getattr(device.device, "vendor", "") or "unknown vendor"
    return f"{device.ep_name} on {device_type(device)} ({vendor})"


def ep_version(name: str) -> str:
    """The EP's own version: its plugin package's, else the version its EP devices report."""
    registered = plugin(name)
    if registered is not None and registered.version:
        return registered.version
    for device in ep_devices(name):
        version = dict(getattr(device, "ep_metadata", {}) or {}).get("version")
        if version:
            return str(version)
    return ""


def _dist_version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module.replace("_", "-"))
    except PackageNotFoundError:
        return ""


class _Redirect:
    """File descriptor 1 pointed at a temporary file while any thread needs it (graphs open
    side by side): the first to enter redirects, the last to leave restores and logs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved = -1
        self.sink: Any = None

    def enter(self, fd: int) -> None:
        with self.lock:
            if self.users == 0:
                sys.stdout.flush()
                self.saved = os.dup(fd)
                self.sink = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 - closed by leave
                os.dup2(self.sink.fileno(), fd)
            self.users += 1

    def leave(self, fd: int, logger: logging.Logger) -> None:
        with self.lock:
            self.users -= 1
            if self.users:
                return
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
            os.dup2(self.saved, fd)
            os.close(self.saved)
            with self.sink:
                self.sink.seek(0)
                lines = self.sink.read().decode("utf-8", "replace").splitlines()
        for line in lines:
            if line.strip():
                logger.info("native output: %s", line.strip())


_redirect = _Redirect()


@contextlib.contextmanager
def native_stdout_to_log(logger: logging.Logger = log) -> Iterator[None]:
    """Send what native code prints on file descriptor 1 to the log instead of stdout.

    Vendor libraries print banners on stdout while loading (the QNN EP: '# LIBNATIVE: ...'),
    and stdout carries the transcript. File descriptor 1 is pointed at a temporary file for the
    duration, and each line it received is logged at INFO (``--verbose`` shows them)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (pytest capture, a GUI)
        yield
        return
    _redirect.enter(fd)
    try:
        yield
    finally:
        _redirect.leave(fd, logger)


def cache_versions(providers: list[str]) -> str:
    """What a compiled-model cache depends on besides the graph: onnxruntime's version, each
    accelerator EP's version and, for AMD's NPU, the firmware the amdxdna driver reports. E.g.
    'ort1.32.0-VitisAI1.6.0-fw1.5.5.391'."""
    import onnxruntime as ort

    parts = [f"ort{ort.__version__}"]
    for name in providers:
        if name == CPU:
            continue
        version = ep_version(name)
        if version:
            parts.append(f"{name.removesuffix('ExecutionProvider')}{version}")
        if name == "VitisAIExecutionProvider":
            firmware = amdxdna_firmware()
            if firmware:
                parts.append(f"fw{firmware}")
    return "-".join(parts)


def amdxdna_firmware(root: str = "/") -> str:
    """The NPU firmware version the amdxdna driver reports in sysfs ('' when there is none)."""
    from pathlib import Path

    for accel in sorted(Path(root, "sys/class/accel").glob("accel*")):
        driver = accel / "device" / "driver"
        try:
            if driver.resolve().name != "amdxdna":
                continue
            return (accel / "device" / "fw_version").read_text().strip()
        except OSError:
            continue
    return ""
