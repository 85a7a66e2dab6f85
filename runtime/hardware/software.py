"""The software probe: what the installed inference libraries offer on this machine.

ONNX Runtime's execution providers (and, on versions that have it, its EP devices) and
MLX's default device. Both are imported lazily, here only; an import failure becomes a
`<library>_reason` detail instead of an error, since either library may be absent.
"""

from __future__ import annotations

from pathlib import Path

from runtime.hardware.finding import Detail, Finding
from runtime.hardware.host import ROOT, HostInfo


def probe_software(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """ONNX Runtime providers and MLX device; present when at least one library loads."""
    host = host or HostInfo.detect(root)
    details: dict[str, Detail] = {}
    try:
        ort = host.onnxruntime()
        details.update(onnxruntime_version=ort.version, providers=list(ort.providers),
                       ep_devices=list(ort.ep_devices))
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken install; the reason is kept
        details.update(providers=[], providers_reason=_reason(exc))
    try:
        mlx = host.mlx()
        details.update(mlx_version=mlx.version, mlx_device=mlx.device, mlx_metal=mlx.metal)
    except Exception as exc:  # noqa: BLE001 - as above
        details.update(mlx_metal=False, mlx_metal_reason=_reason(exc))
    if "onnxruntime_version" in details or "mlx_version" in details:
        return Finding("software", True, details)
    reason = f"{details['providers_reason']}; {details['mlx_metal_reason']}"
    return Finding("software", False, details, reason)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
