"""What a hardware probe reports: a `Finding`, and the `HardwareReport` of all of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# A detail is something `runtime detect` can print and a profile rule can compare.
Detail = str | int | bool | list


@dataclass(frozen=True)
class Finding:
    """One probe's answer: what it found, or the reason it found nothing.

    `reason` is empty when `present` is true; otherwise it says in plain words what was
    checked, so `runtime detect` can show why a profile did not match. A detail named
    `<key>_reason` explains why detail `<key>` has the value it has.
    """

    name: str  # the probe's name, e.g. "amd_npu"
    present: bool  # the hardware (or software) is there and usable
    details: dict[str, Detail] = field(default_factory=dict)
    reason: str = ""  # why nothing usable was found

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy (lists copied so callers cannot mutate the finding)."""
        details = {k: list(v) if isinstance(v, list) else v for k, v in self.details.items()}
        return {
            "name": self.name,
            "present": self.present,
            "details": details,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HardwareReport:
    """Every probe's finding, by probe name, in the order the probes ran."""

    findings: Mapping[str, Finding]

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", MappingProxyType(dict(self.findings)))

    def get(self, name: str) -> Finding | None:
        """The finding of probe `name`, or None when that probe did not run."""
        return self.findings.get(name)

    def names(self) -> list[str]:
        return list(self.findings)

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {name: finding.to_dict() for name, finding in self.findings.items()}
