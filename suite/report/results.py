"""From check outcomes to one verdict per requirement per target."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .. import requirements
from ..outcome import CheckOutcome
from ..requirements import OPTIONAL_FEATURES
from ..verdicts import Verdict, worst


@dataclass
class RequirementResult:
    id: str
    level: str
    title: str
    feature: str | None
    verdict: Verdict
    detail: str
    checks: list[CheckOutcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "level": self.level,
            "verdict": self.verdict.value,
            "title": self.title,
            "feature": self.feature,
            "detail": self.detail,
            "checks": [
                {"nodeid": c.nodeid, "verdict": c.verdict.value, "detail": c.detail, "rerun": c.rerun}
                for c in self.checks
            ],
        }


@dataclass
class TargetResult:
    name: str
    description: str = ""
    declared: dict[str, str] = field(default_factory=dict)
    results: list[RequirementResult] = field(default_factory=list)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    # where it ran: image (or "local"), python and openssl versions, where known
    environment: dict[str, str] = field(default_factory=dict)
    arch: str | None = None  # for matrix cells: the architecture, and the image key
    image: str | None = None
    kind: str = "server"  # or "client": judged on the CH-CLIENT requirements

    def passes_every_must(self) -> bool:
        return not any(r.verdict.fails_run(strict=False) for r in self.results)

    def conformance(self) -> str:
        """ "full" when every MUST holds, optional features included; "core"
        when every MUST outside the optional features holds; else "none"."""
        musts = [r for r in self.results if r.level == "MUST"]
        core = [r for r in musts if r.feature is None]
        optional = [r for r in musts if r.feature is not None]
        if not core or any(r.verdict.fails_run(strict=False) for r in core):
            return "none"
        # Full needs all four features declared and none of their MUSTs broken; a
        # requirement that does not apply (Applies when:) holds vacuously.
        declared = set(self.declared.get("features", "").split(","))
        if declared >= OPTIONAL_FEATURES and not any(r.verdict.fails_run(strict=False) for r in optional):
            return "full"
        return "core"

    def counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for result in self.results:
            counts[result.verdict.value] += 1
        return counts


def aggregate(outcomes: list[CheckOutcome], descriptions: dict[str, str] | None = None) -> list[TargetResult]:
    by_target: dict[str, dict[str, list[CheckOutcome]]] = defaultdict(lambda: defaultdict(list))
    measurements: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for outcome in outcomes:
        for requirement_id in outcome.ids:
            by_target[outcome.target][requirement_id].append(outcome)
        measurements[outcome.target].extend(outcome.measurements)
    spec = requirements.load()
    targets = []
    for name, checks_by_id in by_target.items():
        target = TargetResult(name, (descriptions or {}).get(name, ""), measurements=measurements[name])
        for requirement_id in sorted(checks_by_id, key=_order):
            checks = checks_by_id[requirement_id]
            verdict = worst([c.verdict for c in checks])
            requirement = spec[requirement_id]
            # A SHOULD can never be worse than NON-STRICT for the target.
            if requirement.level == "SHOULD" and verdict is Verdict.FAIL:
                verdict = Verdict.NON_STRICT
            detail = next((c.detail for c in checks if c.verdict is verdict and c.detail), "")
            target.results.append(
                RequirementResult(
                    requirement.id,
                    requirement.level,
                    requirement.title,
                    requirement.feature,
                    verdict,
                    detail,
                    checks,
                )
            )
        targets.append(target)
    return targets


def _order(requirement_id: str) -> tuple[int, int]:
    areas = ["FRAME", "CMD", "ERR", "STORE", "TIMEOUT", "CONC", "LIMIT", "URGENT", "TLS", "LIFE", "CLIENT"]
    _, area, number = requirement_id.split("-")
    return (areas.index(area) if area in areas else len(areas), int(number))


def exit_code(targets: list[TargetResult], strict: bool) -> int:
    verdicts = [r.verdict for t in targets for r in t.results]
    if Verdict.ERROR in verdicts:
        return 2
    if any(v.fails_run(strict) for v in verdicts):
        return 1
    return 0
