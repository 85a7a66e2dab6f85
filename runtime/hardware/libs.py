"""What the installed inference libraries can see, read with lazy imports.

ONNX Runtime and MLX are imported only inside these functions, never when the hardware
package is imported: `runtime detect` must stay fast and must work where they are missing.
A missing or broken library raises ImportError whose message is the reason to show.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OrtInfo:
    """ONNX Runtime as installed: its version, execution providers and EP devices."""

    version: str
    providers: tuple[str, ...]  # onnxruntime.get_available_providers()
    ep_devices: tuple[str, ...]  # get_ep_devices() summarized; empty on versions without it


@dataclass(frozen=True)
class MlxInfo:
    """MLX as installed: its version and default device."""

    version: str
    device: str  # str(mx.default_device()), e.g. "Device(gpu, 0)"
    metal: bool  # mx.metal.is_available()


def load_onnxruntime() -> OrtInfo:
    """Import onnxruntime and list what it offers; ImportError names what went wrong."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"onnxruntime is not installed ({exc})") from exc
    except Exception as exc:  # a broken wheel raises OSError, RuntimeError, ...
        raise ImportError(f"onnxruntime failed to import: {type(exc).__name__}: {exc}") from exc
    providers = tuple(ort.get_available_providers())
    get_ep_devices = getattr(ort, "get_ep_devices", None)  # ONNX Runtime >= 1.22
    devices = tuple(_describe_ep_device(d) for d in get_ep_devices()) if get_ep_devices else ()
    return OrtInfo(version=str(getattr(ort, "__version__", "unknown")), providers=providers, ep_devices=devices)


def _describe_ep_device(ep_device: object) -> str:
    """One line per EP device, e.g. "CPUExecutionProvider on CPU (AMD)"."""
    ep_name = getattr(ep_device, "ep_name", "?")
    device = getattr(ep_device, "device", None)
    kind = getattr(getattr(device, "type", None), "name", "?")
    vendor = getattr(device, "vendor", "") or "unknown vendor"
    return f"{ep_name} on {kind} ({vendor})"


def load_mlx() -> MlxInfo:
    """Import mlx.core and ask for its default device; ImportError names what went wrong."""
    try:
        import mlx.core as mx
    except ImportError as exc:
        raise ImportError(f"mlx is not installed ({exc})") from exc
    except Exception as exc:
        raise ImportError(f"mlx failed to import: {type(exc).__name__}: {exc}") from exc
    metal = bool(mx.metal.is_available())
    return MlxInfo(version=str(getattr(mx, "__version__", "unknown")), device=str(mx.default_device()), metal=metal)
