"""Which profile and backend run: from the hardware report, the profiles and the backends.

``auto`` picks the best matching profile whose backend is available. A named profile that
cannot run here (hardware missing or backend unavailable) falls back along its declared chain,
with one line saying why, unless ``strict`` is set. ``emulate`` runs a named profile on the
stand-in its ``[emulation]`` section names, where its software stack loads without its hardware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.config.profiles import Profile, choose_profile, evaluate, find_profile
from runtime.errors import ProfileError
from runtime.hardware import HardwareReport


@dataclass(frozen=True)
class Selection:
    profile: Profile
    requested: str  # "auto" or the name asked for
    fallback_note: str | None = None  # one line when the requested profile could not run
    notes: list[str] = field(default_factory=list)
    emulation: str | None = None  # what stands in for the hardware (``--emulate``), if anything

    @property
    def emulated(self) -> bool:
        return self.emulation is not None

    @property
    def backend(self) -> str:
        return self.profile.backend


def backend_checker(backends: Mapping[str, Any]):
    """is_backend_available(name) -> (ok, reason) over the registered backends."""

    def check(name: str) -> tuple[bool, str]:
        backend = backends.get(name)
        if backend is None:
            return False, f"no backend {name!r} is registered (plugin not installed or failed)"
        availability = backend.available()
        return bool(availability), availability.reason

    return check


def why_not(profile: Profile, report: HardwareReport, check, emulate: bool = False) -> str | None:
    """The reason ``profile`` cannot run here (on its stand-in, with ``emulate``), or None."""
    if emulate and profile.emulation is None:
        return "it has no [emulation] section"
    match = evaluate(profile, report, emulate)
    if not match.matches:
        return "; ".join(match.reasons)
    ok, reason = check(profile.backend)
    return None if ok else f"backend {profile.backend!r} is unavailable: {reason}"


def emulatable(profiles: Mapping[str, Profile], report: HardwareReport, check) -> list[str]:
    """Names of the profiles whose stand-in can run here (``--emulate``)."""
    return [
        name
        for name, p in sorted(profiles.items())
        if p.emulation and why_not(p, report, check, emulate=True) is None
    ]


def select_profile(
    profiles: Mapping[str, Profile],
    report: HardwareReport,
    backends: Mapping[str, Any],
    requested: str = "auto",
    strict: bool = False,
    emulate: bool = False,
) -> Selection:
    check = backend_checker(backends)
    if emulate:
        return _select_emulated(profiles, report, check, requested, strict)
    if requested == "auto":
        choice = choose_profile(profiles, report, check)
        profile = choice.require()
        note = None
        if choice.fallback_from:
            note = (
                f"profile {choice.fallback_from} matches but cannot run "
                f"({'; '.join(choice.reasons.get(choice.fallback_from, []))}); "
                f"using {profile.name}"
            )
        return Selection(profile, requested, note, list(profile.notes))
    wanted = find_profile(profiles, requested)
    reason = why_not(wanted, report, check)
    if reason is None:
        return Selection(wanted, requested, None, list(wanted.notes))
    if strict:
        raise ProfileError(f"profile {requested} cannot run here: {reason} (--strict: no fallback)")
    for name in wanted.fallback:
        candidate = profiles[name]
        if why_not(candidate, report, check) is None:
            note = f"profile {requested} cannot run here: {reason}; falling back to {name}"
            return Selection(candidate, requested, note, list(candidate.notes))
    raise ProfileError(
        f"profile {requested} cannot run here: {reason}; and none of its "
        f"fallbacks ({', '.join(wanted.fallback) or 'none declared'}) can either"
    )


def _select_emulated(
    profiles: Mapping[str, Profile], report: HardwareReport, check, requested: str, strict: bool
) -> Selection:
    """A named profile on its stand-in; where that cannot run, its fallback chain as usual."""
    here = ", ".join(emulatable(profiles, report, check)) or "none"
    if requested == "auto":
        raise ProfileError(
            f"--emulate needs --profile NAME (profiles that can be emulated here: {here})"
        )
    wanted = find_profile(profiles, requested)
    reason = why_not(wanted, report, check, emulate=True)
    if reason is None:
        assert wanted.emulation is not None  # why_not(emulate=True) refuses a profile without one
        stand_in = f"emulating {wanted.name}: {wanted.emulation.description}"
        return Selection(wanted, requested, None, list(wanted.notes), emulation=stand_in)
    reason = f"{reason} (profiles that can be emulated here: {here})"
    if strict:
        raise ProfileError(
            f"profile {requested} cannot be emulated here: {reason} (--strict: no fallback)"
        )
    for name in wanted.fallback:
        candidate = profiles[name]
        if why_not(candidate, report, check) is None:
            note = f"profile {requested} cannot be emulated here: {reason}; falling back to {name}"
            return Selection(candidate, requested, note, list(candidate.notes))
    raise ProfileError(
        f"profile {requested} cannot be emulated here: {reason}; and none of its "
        f"fallbacks ({', '.join(wanted.fallback) or 'none declared'}) can run"
    )
