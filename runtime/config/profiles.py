"""Hardware profiles: TOML files that say which backend and settings suit which machine.

A profile names a backend and its options, the batcher settings, a priority, an ordered
fallback chain and notes to show, and a list of `[[match]]` rules over the hardware
probes' findings. All rules must hold for the profile to match:

    [[match]]
    probe = "amd_npu"                      # a probe's name (see runtime.hardware)
    present = true                         # the probe found its hardware (the default)
    where = { generation = "xdna2" }       # detail == value; a list value means "any of"
    has = { flags = ["avx2", "fma"] }      # a list detail contains all of these
    label = "AMD XDNA2 NPU"                # plain words for the reason when the rule fails

A profile with no rules matches every machine. `choose_profile` takes the highest-priority
matching profile whose backend is available, trying its fallback chain before the next one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from runtime.config.batchsize import BatchingConfig
from runtime.config.resources import Resources
from runtime.errors import ProfileError
from runtime.hardware.finding import Finding, HardwareReport

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib

Scalar = bool | int | str
BackendCheck = Callable[[str], "tuple[bool, str]"]  # backend name -> (available, why not)
_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class Rule(BaseModel):
    """One `[[match]]` rule over one probe's finding."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    probe: str = Field(description="Name of the probe whose finding is tested, e.g. 'amd_npu'.")
    present: bool = Field(
        default=True, description="Whether the probe must have found its hardware."
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="Details that must equal these values (a list: any of them).",
    )
    has: dict[str, list[str]] = Field(
        default_factory=dict, description="List details that must contain all of these items."
    )
    label: str | None = Field(
        default=None, description="What the rule asks for, in words, e.g. 'AMD XDNA2 NPU'."
    )

    @property
    def wanted(self) -> str:
        return self.label or self.probe

    @field_validator("where")
    @classmethod
    def _scalars_only(cls, where: dict[str, Any]) -> dict[str, Any]:
        """One clear message instead of one per member of a Union type."""
        for key, value in where.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, (bool, int, str)) for v in values):
                raise ValueError(
                    f"{key}: must be a string, integer, boolean or a non-empty list of them "
                    f"(got {value!r})"
                )
        return where


class Emulation(BaseModel):
    """How a profile runs where its hardware is absent but its software stack loads: the QNN HTP
    simulator, OpenVINO's CPU device (``--emulate``). The backend gets ``LoadOptions.emulate``
    and changes only what its options' emulation sections say; the rest of the profile runs as
    on the device."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    description: str = Field(description="What stands in for the hardware, in one line.")
    replaces: list[str] = Field(
        min_length=1,
        description="Probes whose [[match]] rules the stand-in replaces, e.g. 'qualcomm_npu'.",
    )


class Profile(BaseModel):
    """One hardware profile, as read from its TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=_NAME, description="Unique name, used with --profile.")
    description: str = Field(description="One line for `runtime detect`.")
    priority: int = Field(default=0, description="Higher wins among matching profiles.")
    match: list[Rule] = Field(
        default_factory=list, description="Rules that must all hold; none = always."
    )
    backend: str = Field(pattern=_NAME, description="Name of the backend plugin, e.g. 'onnx'.")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the backend, which validates it."
    )
    batcher: BatchingConfig = Field(default_factory=BatchingConfig)
    resources: Resources = Field(default_factory=Resources)  # per worker on a cluster (--ray)
    fallback: list[str] = Field(
        default_factory=list, description="Profiles to try, in order, when the backend cannot run."
    )
    notes: list[str] = Field(default_factory=list, description="Shown when this profile is chosen.")
    emulation: Emulation | None = Field(
        default=None, description="A stand-in for the hardware, if any."
    )

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this profile was read from (None when built in code)."""
        return self._source

    @model_validator(mode="after")
    def _check_fallback(self) -> Profile:
        if self.name in self.fallback:
            raise ValueError(f"fallback: profile {self.name!r} cannot fall back to itself")
        duplicates = sorted({n for n in self.fallback if self.fallback.count(n) > 1})
        if duplicates:
            raise ValueError(f"fallback: {', '.join(duplicates)} listed more than once")
        return self


# --- loading --------------------------------------------------------------------------


def builtin_profiles_dir() -> Path:
    """The folder of the profiles shipped with the runtime (the top-level `profiles` package)."""
    from profiles import directory

    return directory()


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file; ProfileError names the file, field and problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: invalid TOML: {exc}") from exc
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe_error(error) for error in exc.errors())
        raise ProfileError(f"{path}: {problems}") from exc
    profile._source = path
    return profile


def _describe_error(error: Mapping[str, Any]) -> str:
    """'match[0].where: unknown field' from one pydantic error."""
    field_name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(
        "."
    )
    if error["type"] == "extra_forbidden":
        return f"{field_name}: unknown field"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{field_name}: required field is missing"
    if error["type"].endswith("_type") or error["type"] in (
        "literal_error",
        "string_pattern_mismatch",
    ):
        message = f"{message} (got {error.get('input')!r})"
    return f"{field_name}: {message}" if field_name else message


def load_profiles(dirs: Iterable[Path]) -> dict[str, Profile]:
    """Every *.toml profile in `dirs`, by name; duplicate names and unknown fallbacks are errors."""
    profiles: dict[str, Profile] = {}
    for directory in map(Path, dirs):
        if not directory.is_dir():
            raise ProfileError(f"{directory}: profile directory does not exist")
        for path in sorted(directory.glob("*.toml")):
            profile = load_profile(path)
            if profile.name in profiles:
                first = profiles[profile.name].source
                raise ProfileError(
                    f"{path}: name: duplicate profile name {profile.name!r} (also in {first})"
                )
            profiles[profile.name] = profile
    for profile in profiles.values():
        unknown = [name for name in profile.fallback if name not in profiles]
        if unknown:
            raise ProfileError(
                f"{profile.source}: fallback: unknown profile {unknown[0]!r} "
                f"(known: {', '.join(sorted(profiles))})"
            )
    return profiles


def find_profile(profiles: Mapping[str, Profile], name: str) -> Profile:
    """The profile called `name` (for --profile), or a ProfileError listing the known ones."""
    if name not in profiles:
        raise ProfileError(
            f"unknown profile {name!r}; known profiles: {', '.join(sorted(profiles))}"
        )
    return profiles[name]


# --- matching -------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """Whether a profile matches a report, with the reason for each rule that failed."""

    matches: bool
    reasons: list[str] = field(default_factory=list)


def evaluate(profile: Profile, report: HardwareReport, emulate: bool = False) -> Match:
    """Test every rule of `profile` against `report`; the reasons say what is missing. With
    `emulate`, the rules of the probes its emulation replaces are left out."""
    replaced = set(profile.emulation.replaces) if emulate and profile.emulation else set()
    reasons = [
        reason
        for rule in profile.match
        if rule.probe not in replaced
        for reason in _check_rule(rule, report)
    ]
    return Match(not reasons, reasons)


def _check_rule(rule: Rule, report: HardwareReport) -> list[str]:
    finding = report.get(rule.probe)
    if finding is None:
        return [f"no {rule.wanted}: the {rule.probe} probe did not run"]
    if not rule.present:
        return (
            [f"{rule.wanted} must be absent, but {rule.probe} found it"] if finding.present else []
        )
    if not finding.present:
        return [f"no {rule.wanted}: {rule.probe} found nothing ({finding.reason})"]
    reasons = [
        r
        for key, expected in rule.where.items()
        if (r := _check_where(rule, finding, key, expected))
    ]
    reasons += [
        r for key, items in rule.has.items() if (r := _check_has(rule, finding, key, items))
    ]
    return reasons


def _check_where(
    rule: Rule, finding: Finding, key: str, expected: Scalar | list[Scalar]
) -> str | None:
    if key not in finding.details:
        return f"no {rule.wanted}: {rule.probe} reports no {key}{_why(finding, key)}"
    actual = finding.details[key]
    options = expected if isinstance(expected, list) else [expected]
    if any(_same(actual, option) for option in options):
        return None
    needed = f"one of {options!r}" if isinstance(expected, list) else repr(expected)
    return (
        f"no {rule.wanted}: {rule.probe} reports {key} = {actual!r}, needs {needed}"
        f"{_why(finding, key)}"
    )


def _check_has(rule: Rule, finding: Finding, key: str, items: list[str]) -> str | None:
    actual = finding.details.get(key)
    present = actual if isinstance(actual, list) else []
    missing = [item for item in items if item not in present]
    if not missing:
        return None
    found = ", ".join(map(str, present)) or "none"
    return (
        f"no {rule.wanted}: {rule.probe} {key} lack {', '.join(missing)} "
        f"(found: {found}){_why(finding, key)}"
    )


def _same(actual: object, expected: Scalar) -> bool:
    """Equality that does not take True for 1 (TOML and the details keep them apart)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return actual == expected


def _why(finding: Finding, key: str) -> str:
    """' (reason)' when the finding explains this detail in `<key>_reason`."""
    reason = finding.details.get(f"{key}_reason")
    return f" ({reason})" if reason else ""


# --- choosing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The profile to use, and for every other profile the reason it was not chosen."""

    profile: Profile | None  # None when no profile matched with an available backend
    reasons: dict[str, list[str]]
    matching: list[str]  # names of the profiles that match this hardware, best first
    fallback_from: str | None = None  # the better profile whose backend was unavailable

    def require(self) -> Profile:
        """The chosen profile, or a ProfileError with every profile's reason."""
        if self.profile is None:
            lines = "; ".join(
                f"{name}: {' / '.join(why)}" for name, why in sorted(self.reasons.items())
            )
            raise ProfileError(f"no profile can run on this machine ({lines})")
        return self.profile


def choose_profile(
    profiles: Mapping[str, Profile], report: HardwareReport, is_backend_available: BackendCheck
) -> Choice:
    """Pick the highest-priority matching profile whose backend is available.

    Matching profiles are tried by priority (then name). When one's backend is unavailable,
    its `fallback` profiles are tried next, in order, before the next matching profile; a
    fallback need not match by itself (its author vouches for it on that hardware).
    """
    reasons: dict[str, list[str]] = {}
    for name, profile in profiles.items():
        result = evaluate(profile, report)
        if not result.matches:
            reasons[name] = result.reasons
    matching = sorted(
        (p for n, p in profiles.items() if n not in reasons), key=lambda p: (-p.priority, p.name)
    )
    available = _cached(is_backend_available)
    for profile in matching:
        ok, why = available(profile.backend)
        if ok:
            return _chosen(profile, matching, reasons, None)
        reasons[profile.name] = [f"matches, but backend {profile.backend!r} is unavailable: {why}"]
        for name in profile.fallback:
            fallback = profiles.get(name)
            if fallback is None:
                reasons.setdefault(name, []).append(
                    f"fallback of {profile.name}, but no such profile"
                )
                continue
            ok, why = available(fallback.backend)
            if ok:
                return _chosen(fallback, matching, reasons, profile)
            reasons.setdefault(name, []).append(
                f"fallback of {profile.name}, but backend {fallback.backend!r} is "
                f"unavailable: {why}"
            )
    return Choice(None, reasons, [p.name for p in matching])


def _chosen(
    profile: Profile,
    matching: list[Profile],
    reasons: dict[str, list[str]],
    fallback_from: Profile | None,
) -> Choice:
    """The Choice for `profile`, with reasons for the matching profiles not tried."""
    winner = fallback_from or profile
    for other in matching:
        if other.name != profile.name and other.name not in reasons:
            reasons[other.name] = [
                f"matches, but {winner.name} ranks higher "
                f"(priority {winner.priority} > {other.priority})"
                if winner.priority > other.priority
                else f"matches, but {winner.name} comes first (same priority, by name)"
            ]
    reasons.pop(profile.name, None)
    return Choice(
        profile, reasons, [p.name for p in matching], fallback_from.name if fallback_from else None
    )


def _cached(check: BackendCheck) -> BackendCheck:
    """Ask about each backend once per choice: availability checks may import a library."""
    seen: dict[str, tuple[bool, str]] = {}

    def cached(backend: str) -> tuple[bool, str]:
        if backend not in seen:
            seen[backend] = check(backend)
        return seen[backend]

    return cached
