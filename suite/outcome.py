"""One check's outcome: which requirements, which verdict, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckOutcome:
        data = dict(data)
        data["verdict"] = Verdict(data["verdict"])
        return cls(**data)


def verdict_for_violation(ids: list[str]) -> Verdict:
    """A broken MUST fails; a check that covers only SHOULDs is NON-STRICT."""
    levels = {requirements.get(i).level for i in ids}
    return Verdict.FAIL if "MUST" in levels else Verdict.NON_STRICT
