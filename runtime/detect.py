"""What ``runtime detect`` reports: hardware found, backends, plugins, every profile's verdict.

Built as plain data first (``--json``), then rendered as text, so both say the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.config.profiles import load_profiles
from runtime.config.selection import backend_checker, select_profile, why_not
from runtime.config.settings import Settings
from runtime.errors import ProfileError, WhisperRuntimeError
from runtime.hardware import HardwareReport, run_probes
from runtime.plugins import Plugins


def detect(settings: Settings, plugins: Plugins, load: bool = False) -> dict[str, Any]:
    """What was found and chosen; with ``load``, the chosen profile's model is loaded too, so
    the report says where its graphs really run (providers fall back silently otherwise)."""
    report: HardwareReport = run_probes(settings.hardware_root, plugins.probes())
    backends = plugins.backends()
    check = backend_checker(backends)
    profiles = load_profiles(plugins.profile_dirs() + list(settings.profile_dirs))
    verdicts = {}
    for name, profile in sorted(profiles.items(), key=lambda kv: (-kv[1].priority, kv[0])):
        reason = why_not(profile, report, check)
        emulation = profile.emulation
        verdicts[name] = {
            "matches": reason is None,
            "reason": reason or "matches",
            "backend": profile.backend,
            "priority": profile.priority,
            "description": profile.description,
            "emulation": emulation.description if emulation else None,
            "emulatable": bool(emulation) and why_not(profile, report, check, emulate=True) is None,
        }
    try:
        sel = select_profile(
            profiles, report, backends, settings.profile, settings.strict, settings.emulate
        )
        chosen = {
            "profile": sel.profile.name,
            "backend": sel.backend,
            "backend_available": True,
            "fallback_note": sel.fallback_note,
            "notes": sel.notes,
            "emulation": sel.emulation,
        }
    except ProfileError as exc:
        chosen = {"profile": None, "error": str(exc)}
    if load and chosen.get("profile"):
        chosen["loaded"] = _load(settings, plugins)
    return {
        "hardware": report.to_dict(),
        "backends": {name: _backend_info(b) for name, b in sorted(backends.items())},
        "plugins": [
            {"name": p.name, "source": p.source, "error": p.error, "blocked": p.blocked}
            for p in plugins.info
        ],
        "profiles": verdicts,
        "chosen": chosen,
    }


def _load(settings: Settings, plugins: Plugins) -> dict[str, Any]:
    """Load the default model on the chosen profile: what really runs where, or why it fails."""
    from runtime.api import Runtime

    try:
        session = Runtime(settings=settings, plugins=plugins).session
    except WhisperRuntimeError as exc:
        return {"ok": False, "error": str(exc)}
    lines = session.report()
    return {"ok": True, "model": session.model.name, "device": session.device, "lines": lines}


def _backend_info(backend) -> dict[str, Any]:
    a = backend.available()
    caps = backend.capabilities
    return {
        "available": bool(a),
        "reason": a.reason,
        "device": a.device,
        "capabilities": {
            "batched_encoder": caps.batched_encoder,
            "batched_decoder": caps.batched_decoder,
            "encoder_batch_sizes": caps.encoder_batch_sizes,
            "word_timestamps": caps.word_timestamps,
            "precisions": list(caps.precisions),
            "devices": list(caps.devices),
        },
    }


def render(data: dict[str, Any]) -> str:
    lines = ["Hardware"]
    for name, f in data["hardware"].items():
        if f["present"]:
            details = ", ".join(
                f"{k}={_short(v)}" for k, v in f["details"].items() if not k.endswith("_reason")
            )
            lines.append(f"  {name:13} found: {details}")
        else:
            lines.append(f"  {name:13} not found: {f['reason']}")
    lines.append("Backends")
    for name, b in data["backends"].items():
        state = "available" if b["available"] else "unavailable"
        lines.append(f"  {name:13} {state}: {b['reason']}")
    failed = [p for p in data["plugins"] if p["error"] or p["blocked"]]
    if failed:
        lines.append("Plugins")
        lines += [
            f"  {p['name']:13} {'blocked' if p['blocked'] else 'failed: ' + p['error']}"
            for p in failed
        ]
    lines.append("Profiles")
    for name, v in data["profiles"].items():
        lines.append(f"  {name:13} {'matches' if v['matches'] else 'no: ' + v['reason']}")
        if v["emulatable"]:
            lines.append(
                f"  {'':13} can be emulated here (--profile {name} --emulate): {v['emulation']}"
            )
    chosen = data["chosen"]
    if chosen.get("profile"):
        lines.append(f"Chosen: {chosen['profile']} (backend {chosen['backend']}, available)")
        if chosen.get("fallback_note"):
            lines.append(f"  {chosen['fallback_note']}")
        if chosen.get("emulation"):
            lines.append(f"  {chosen['emulation']}")
        lines += [f"  note: {n}" for n in chosen.get("notes", [])]
        loaded = chosen.get("loaded")
        if loaded and loaded["ok"]:
            lines.append(f"Loaded {loaded['model']} on {loaded['device']}:")
            lines += [f"  {line}" for line in loaded["lines"]]
        elif loaded:
            lines.append(f"Loading failed: {loaded['error']}")
    else:
        lines.append(f"Chosen: none: {chosen['error']}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(map(str, value[:12])) + (" ..." if len(value) > 12 else "") + "]"
    return str(value)


def describe_profile(profile) -> str:
    """`runtime profiles NAME`: the TOML file's content, as written."""
    source: Path | None = profile.source
    return source.read_text() if source else repr(profile)
