"""The MLX probe: whether MLX imports and which device it would use (Metal GPU or CPU).

Registered by the MLX plugin (``register_probes``), so the core knows nothing of MLX. mlx.core is
imported only inside the probe; on a fake machine (tests) its facts come from ``fake/mlx.json``.
"""

from __future__ import annotations

from pathlib import Path

from runtime.hardware import Detail, Finding, HostInfo, set_probe_name

ROOT = Path("/")


def probe_mlx(root: Path = ROOT, host: HostInfo | None = None) -> Finding:
    """MLX's version and default device; ``metal`` says whether it sees a Metal GPU."""
    host = host or HostInfo.detect(root)
    try:
        facts = host.library("mlx") or _real_mlx()
    except ImportError as exc:
        return Finding("mlx", False, {"metal": False, "metal_reason": str(exc)}, str(exc))
    except Exception as exc:  # noqa: BLE001 - MLX raises RuntimeError when Metal cannot start
        why = f"mlx failed: {type(exc).__name__}: {exc}"
        return Finding("mlx", False, {"metal": False, "metal_reason": why}, why)
    metal = bool(facts.get("metal", False))
    details: dict[str, Detail] = {
        "version": str(facts.get("version", "unknown")),
        "device": str(facts.get("device", "Device(cpu, 0)")),
        "metal": metal,
    }
    if not metal:
        details["metal_reason"] = (
            f"MLX {details['version']} sees no Metal device (default device {details['device']})"
        )
    return Finding("mlx", True, details)


set_probe_name(probe_mlx, "mlx")


def _real_mlx() -> dict[str, Detail]:
    try:
        import mlx.core as mx
    except ImportError as exc:
        raise ImportError(f"mlx is not installed ({exc})") from exc
    return {
        "version": str(getattr(mx, "__version__", "unknown")),
        "device": str(mx.default_device()),
        "metal": bool(mx.metal.is_available()),
    }
