"""One check's outcome: which requirements, which verdict, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import requirements
from .verdicts import Verdict


@dataclass
class CheckOutcome:
    nodeid: str
    target: str
    ids: list[str]
    verdict: Verdict
    detail: str = ""  # one line
    explanation: str = ""  # the full text shown for a failure
    measurements: list[dict[str, Any]] = field(default_factory=list)
    rerun: str = ""
    declared: dict[str, str] = field(default_factory=dict)
    cause: str = ""  # the target's exit, when the check failed after it: the root of the failure
    time: float = 0.0  # seconds, set-up (starting a fresh target) and the check itself
    failure: dict[str, Any] | None = None  # the Violation, structured (report.explain.structured)
    timelines: list[dict[str, Any]] = field(default_factory=list)  # concurrency pictures: who waited for whom

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckOutcome:
        """From ``to_json``'s dict, or from a report's check entry (schema 1
        entries lack what schema 2 added; unknown keys are left out)."""
        known = {f.name for f in fields(cls)}
        data = {key: value for key, value in data.items() if key in known}
        data["verdict"] = Verdict(data["verdict"])
        return cls(**data)


def verdict_for_violation(ids: list[str]) -> Verdict:
    """A broken MUST fails; a check that covers only SHOULDs is NON-STRICT."""
    levels = {requirements.get(i).level for i in ids}
    return Verdict.FAIL if "MUST" in levels else Verdict.NON_STRICT
