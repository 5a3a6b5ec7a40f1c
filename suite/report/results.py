"""From check outcomes to one verdict per requirement per target."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .. import profiles, requirements
from ..outcome import CheckOutcome
from ..verdicts import Verdict, worst
from . import roots


@dataclass
class RequirementResult:
    id: str
    level: str
    title: str
    feature: str | None
    verdict: Verdict
    detail: str
    checks: list[CheckOutcome]
    # the failing prerequisites (roots.PREREQUISITES) this FAIL may only be the echo of
    may_follow_from: list[str] = field(default_factory=list)

    def unchecked(self, declared: set[str]) -> bool:
        """A MUST that applies to the target, and that the run could not check:
        UNSUPPORTED for a reason other than "not applicable" (Applies when:) or
        an optional feature the target does not declare (no Docker engine for
        the DNS scenarios, no fresh process for an --address target, a declared
        feature with nothing to reach it by)."""
        if self.level != "MUST" or self.verdict is not Verdict.UNSUPPORTED:
            return False
        if self.detail.startswith("not applicable"):
            return False
        return set(_features_of(self)) <= declared

    @property
    def area(self) -> str:
        return self.id.split("-")[1]

    @property
    def time(self) -> float:
        """Seconds spent on it: the sum of its checks (a check that covers two
        requirements counts in both)."""
        return round(sum(c.time for c in self.checks), 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "area": self.area,
            "level": self.level,
            "verdict": self.verdict.value,
            "title": self.title,
            "feature": self.feature,
            "detail": self.detail,
            "may_follow_from": self.may_follow_from,
            "time": self.time,
            "checks": [_check_json(c) for c in self.checks],
        }


def _check_json(check: CheckOutcome) -> dict[str, Any]:
    """A check as the report carries it: everything ``CheckOutcome.from_json``
    needs to rebuild it (``sockspec merge`` does), minus the target (the
    entry it sits in says that)."""
    data = check.to_json()
    del data["target"]
    return data


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
    problem: str = ""  # why this target's run gave no level (a batch: it never answered, or ran out of time)
    rerun: str = ""  # one line that runs this target again

    def passes_every_must(self) -> bool:
        return not any(r.verdict.fails_run(strict=False) for r in self.results)

    def conformance(self) -> str:
        """ "full" when every MUST holds, optional features included (all four
        declared); "core" when every MUST outside the optional features holds;
        "none" when one is broken. A level is claimed only for what was checked:
        "unchecked" when a core MUST could not be checked, and an unchecked MUST
        of a declared feature keeps the level at "core"."""
        musts = [r for r in self.results if r.level == "MUST"]
        core = [r for r in musts if r.feature is None]
        optional = [r for r in musts if r.feature is not None]
        if not core or any(r.verdict.fails_run(strict=False) for r in core):
            return "none"
        declared = self.declared_features()
        if any(r.unchecked(declared) for r in core):
            return "unchecked"
        # A requirement that does not apply (Applies when:) holds vacuously.
        if (
            declared >= self.profile().optional_features
            and not any(r.verdict.fails_run(strict=False) for r in optional)
            and not any(r.unchecked(declared) for r in optional)
        ):
            return "full"
        return "core"

    def declared_features(self) -> set[str]:
        return {f for f in self.declared.get("features", "").split(",") if f}

    def profile(self) -> profiles.Profile:
        """The profile the target was judged under, known by its requirements' IDs."""
        for result in self.results:
            with contextlib.suppress(KeyError):
                return profiles.of_requirement(result.id)
        return profiles.PROFILES[profiles.DEFAULT]

    def feature_order(self) -> tuple[str, ...]:
        return tuple(f for f in FEATURE_ORDER if f in self.profile().optional_features)

    def unchecked(self) -> list[RequirementResult]:
        """The MUSTs that apply and could not be checked."""
        declared = self.declared_features()
        return [r for r in self.results if r.unchecked(declared)]

    def level_explained(self) -> str:
        """The level and why, in one line: "core: every MUST outside the optional
        features holds; `urgent` is not declared"."""
        level = self.conformance()
        broken = [r for r in self.results if r.level == "MUST" and r.verdict.fails_run(strict=False)]
        unchecked = _name_unchecked(self.unchecked())
        if level == "none":
            core_broken = [r for r in broken if r.feature is None]
            if not core_broken:
                return "none: no MUST outside the optional features was checked"
            return f"none: {_name_broken(core_broken)}"
        if level == "unchecked":
            return f"unchecked: every MUST that was checked holds, but {unchecked}; no level is claimed"
        if level == "full":
            count = len(self.feature_order())
            every = {1: "its one feature is", 4: "all four features are"}.get(count, f"all {count} features are")
            return f"full: every MUST holds, optional features included, and {every} declared"
        undeclared = [f"`{f}`" for f in self.feature_order() if f not in self.declared_features()]
        reasons = (
            [f"{', '.join(undeclared)} {'is' if len(undeclared) == 1 else 'are'} not declared"] if undeclared else []
        )
        optional_broken = [r for r in broken if r.feature is not None]
        if optional_broken:
            reasons.append(_name_broken(optional_broken))
        if unchecked:
            reasons.append(unchecked)
        return "core: every MUST outside the optional features holds; " + "; ".join(reasons)

    def features(self) -> dict[str, str]:
        """Each optional feature's standing: "passed" (declared, checked, none of
        its MUSTs broken), "failed", "not checked" (declared, but no check of it
        ran) or "not declared"."""
        standing = {}
        declared = self.declared_features()
        for feature in self.feature_order():
            mine = [r for r in self.results if feature in _features_of(r)]
            if feature not in declared:
                standing[feature] = "not declared"
            elif any(r.level == "MUST" and r.verdict.fails_run(strict=False) for r in mine):
                standing[feature] = "failed"
            elif any(r.verdict in (Verdict.PASS, Verdict.NON_STRICT, Verdict.INFO) for r in mine):
                standing[feature] = "passed"
            else:
                standing[feature] = "not checked"
        return standing

    @property
    def time(self) -> float:
        """Seconds spent on the target: the sum of its checks, each counted once."""
        seen = {c.nodeid: c.time for r in self.results for c in r.checks}
        return round(sum(seen.values()), 4)

    def counts(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for result in self.results:
            counts[result.verdict.value] += 1
        return counts


# The optional features in the order section 2 of the spec lists them.
FEATURE_ORDER = ("framed", "tls", "starttls", "urgent")


def _features_of(result: RequirementResult) -> tuple[str, ...]:
    try:
        return requirements.get(result.id).features
    except KeyError:  # a hand-made result for an ID the spec does not have
        return (result.feature,) if result.feature else ()


def _name_unchecked(unchecked: list[RequirementResult]) -> str:
    """ "CH-CLIENT-1, CH-CLIENT-2 could not be checked (no Docker engine ...)", one clause per reason."""
    by_reason: dict[str, list[str]] = {}
    for result in unchecked:
        by_reason.setdefault(result.detail or "no reason given", []).append(result.id)
    return "; ".join(f"{', '.join(ids)} (MUST) could not be checked ({reason})" for reason, ids in by_reason.items())


def _name_broken(broken: list[RequirementResult], shown: int = 3) -> str:
    """ "CH-FRAME-17 (MUST) fails", or several: "CH-A, CH-B (MUST) fail and 4 more";
    an ERROR says that the requirement could not be judged."""
    failed = [r for r in broken if r.verdict is Verdict.FAIL]
    errors = [r.id for r in broken if r.verdict is Verdict.ERROR]
    parts = []
    if failed:
        features = sorted({r.feature for r in failed if r.feature})
        tag = ", ".join(["MUST", *features])
        verb = "fails" if len(failed) == 1 else "fail"
        more = f" and {len(failed) - shown} more" if len(failed) > shown else ""
        parts.append(f"{', '.join(r.id for r in failed[:shown])} ({tag}) {verb}{more}")
    if errors:
        more = f" and {len(errors) - shown} more" if len(errors) > shown else ""
        parts.append(f"{', '.join(errors[:shown])}{more} could not be judged (ERROR)")
    return "; ".join(parts)


@dataclass(frozen=True)
class RunFacts:
    """What kind of run produced the results, as the reports must tell it: a
    run that checked part of the spec, or did not finish, gets no level."""

    strict: bool = False
    seed: int | None = None
    only: list[str] = field(default_factory=list)  # the --only patterns; empty for the whole spec
    interrupted: bool = False  # Ctrl-C or SIGTERM
    stopped: str = ""  # why the run stopped early on its own (-x, --area-by-area), if it did
    allow_unchecked: bool = False  # --allow-unchecked: a MUST that could not be checked does not fail the run
    shard: tuple[int, int] | None = None  # (I, N) for --shard I/N: one share of a run, merged later

    def withheld(self) -> str | None:
        """Why no conformance level is given, or None when one is."""
        if self.interrupted:
            return "interrupted: results are incomplete; no level"
        if self.shard is not None:
            index, count = self.shard
            return f"shard {index}/{count}: one share of the checks; `sockspec merge` the shards for a level"
        if self.stopped:
            return f"stopped early ({self.stopped}): results are incomplete; no level"
        if self.only:
            return f"partial (--only {','.join(self.only)}): no conformance level is given for a partial run"
        return None

    def level(self, target: TargetResult) -> str | None:
        """The target's level, or None when the run cannot give one."""
        return None if self.withheld() or target.problem else target.conformance()

    def level_line(self, target: TargetResult) -> str:
        return self.withheld() or target.problem or target.level_explained()


def aggregate(outcomes: list[CheckOutcome], descriptions: dict[str, str] | None = None) -> list[TargetResult]:
    by_target: dict[str, dict[str, list[CheckOutcome]]] = defaultdict(lambda: defaultdict(list))
    measurements: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for outcome in outcomes:
        for requirement_id in outcome.ids:
            by_target[outcome.target][requirement_id].append(outcome)
        measurements[outcome.target].extend({**m, "requirement": outcome.ids[0]} for m in outcome.measurements)
    targets = []
    for name, checks_by_id in by_target.items():
        target = TargetResult(name, (descriptions or {}).get(name, ""), measurements=measurements[name])
        for requirement_id in sorted(checks_by_id, key=roots.spec_order):
            checks = checks_by_id[requirement_id]
            verdict = worst([c.verdict for c in checks])
            requirement = requirements.get(requirement_id)
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
        for result in target.results:
            result.may_follow_from = roots.may_follow_from(result, target.results)
        targets.append(target)
    return targets


EXIT_INTERRUPTED = 130  # as a shell reports a process ended by SIGINT; the CLI says the same


def exit_code(targets: list[TargetResult], facts: RunFacts) -> int:
    """0, 1 or 2 as the README says; an interrupted run is never 0, whatever it
    saw, and neither is one with a MUST it could not check (a CI gate must not
    let through what nobody judged), unless --allow-unchecked says so."""
    if facts.interrupted:
        return EXIT_INTERRUPTED
    verdicts = [r.verdict for t in targets for r in t.results]
    if Verdict.ERROR in verdicts or any(t.problem for t in targets):
        return 2  # something could not be judged: a harness ERROR, a target that never answered or ran out of time
    if any(v.fails_run(facts.strict) for v in verdicts):
        return 1
    if not facts.allow_unchecked and any(t.unchecked() for t in targets):
        return 2
    return 0
