"""Reading JSON reports back, and joining them: the shards of one run
(``--shard I/N``) into the verdicts of the whole run, or runs of different
targets into one report. ``sockspec merge`` is this module's command.

A report is rebuilt from its checks, not from its verdicts: the verdict of a
requirement is the worst of its checks wherever they ran, so a merge judges
exactly as one whole run would. Schema 1 reports (no per-check IDs) are read
too: a check's IDs are the requirements it is listed under.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from ..outcome import CheckOutcome
from . import files
from .results import RunFacts, TargetResult, aggregate

__all__ = ["Report", "ReportProblem", "merge", "read"]


class ReportProblem(Exception):
    """A report that cannot be read or merged: one line for the user, exit 2."""


@dataclass
class Report:
    path: str
    targets: list[TargetResult]
    facts: RunFacts


def read(path: str) -> Report:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportProblem(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportProblem(f"{path}: not a JSON report ({error})") from None
    if not isinstance(data, dict) or data.get("schema") not in (1, 2):
        raise ReportProblem(f'{path}: not a sockspec JSON report (no "schema": 1 or 2)')
    schema = files.schema(data["schema"])
    mismatch = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
    if mismatch is not None:
        where = "/".join(str(part) for part in mismatch.absolute_path) or "the top level"
        raise ReportProblem(f"{path}: does not follow report schema {data['schema']} at {where}: {mismatch.message}")
    return Report(path, [_target(entry) for entry in data["targets"]], _facts(data))


def _target(entry: dict[str, Any]) -> TargetResult:
    checks: dict[str, dict[str, Any]] = {}
    for result in entry["results"]:
        for check in result["checks"]:
            known = checks.setdefault(check["nodeid"], {**check, "target": entry["name"], "ids": []})
            if result["id"] not in known["ids"]:  # schema 1 lists the IDs only by where a check sits
                known["ids"].append(result["id"])
    outcomes = [CheckOutcome.from_json(check) for check in checks.values()]
    rebuilt = aggregate(outcomes, {entry["name"]: entry.get("target", "")})
    target = rebuilt[0] if rebuilt else TargetResult(entry["name"], entry.get("target", ""))
    _describe(target, entry)
    return target


def _describe(target: TargetResult, entry: dict[str, Any]) -> None:
    target.kind = entry.get("kind", "server")
    target.declared = dict(entry.get("declared") or {})
    target.environment = dict(entry.get("environment") or {})
    target.arch = entry.get("arch")
    target.image = entry.get("image")
    target.problem = entry.get("problem") or ""
    target.rerun = entry.get("rerun", "")


def _facts(data: dict[str, Any]) -> RunFacts:
    summary = data.get("summary", {})
    shard = data.get("shard")
    return RunFacts(
        strict=bool(summary.get("strict")),
        seed=summary.get("seed"),
        only=list((data.get("partial") or {}).get("only", [])),
        interrupted=bool(data.get("interrupted")),
        stopped=data.get("stopped") or "",
        allow_unchecked=bool(summary.get("allow_unchecked")),
        shard=(shard["index"], shard["count"]) if shard else None,
    )


def merge(reports: list[Report]) -> tuple[list[TargetResult], RunFacts]:
    """One report from several: every check of every report, judged together.
    Shards must be all N shares of one run (same seed and options); a check
    found in two reports is a mistake (the same shard twice, or overlapping
    runs) and so is a shard that is missing."""
    if not reports:
        raise ReportProblem("no reports to merge")
    _check_shards(reports)
    _check_alike(reports)
    outcomes: dict[tuple[str, str], CheckOutcome] = {}
    entries: dict[str, TargetResult] = {}
    for report in reports:
        for target in report.targets:
            entries.setdefault(target.name, target)
            for result in target.results:
                for check in result.checks:
                    key = (target.name, check.nodeid)
                    if key in outcomes and outcomes[key] is not check:
                        other = next(r.path for r in reports if _has(r, key))
                        raise ReportProblem(f"{report.path} and {other} both checked {target.name}: {check.nodeid}")
                    outcomes[key] = check
    merged = aggregate(list(outcomes.values()), {name: t.description for name, t in entries.items()})
    judged = {target.name for target in merged}
    merged += [target for name, target in entries.items() if name not in judged]  # no checks: it never answered
    for target in merged:
        source = entries[target.name]
        target.kind, target.declared, target.environment = source.kind, source.declared, source.environment
        target.arch, target.image = source.arch, source.image
        target.problem, target.rerun = source.problem, source.rerun
    order = list(entries)
    merged.sort(key=lambda target: order.index(target.name))
    first = reports[0].facts
    facts = RunFacts(
        strict=first.strict,
        seed=first.seed if len({r.facts.seed for r in reports}) == 1 else None,
        only=first.only,
        interrupted=any(r.facts.interrupted for r in reports),
        stopped="; ".join(r.facts.stopped for r in reports if r.facts.stopped),
        allow_unchecked=first.allow_unchecked,
    )
    return merged, facts


def _has(report: Report, key: tuple[str, str]) -> bool:
    name, nodeid = key
    return any(t.name == name and any(c.nodeid == nodeid for r in t.results for c in r.checks) for t in report.targets)


def _check_shards(reports: list[Report]) -> None:
    shards = [r for r in reports if r.facts.shard is not None]
    if not shards:
        return
    if len(shards) != len(reports):
        whole = next(r.path for r in reports if r.facts.shard is None)
        raise ReportProblem(f"{whole} is a whole run, the others are shards: merge the shards of one run")
    counts = {r.facts.shard[1] for r in shards if r.facts.shard}
    if len(counts) != 1:
        raise ReportProblem(f"the shards come from different splits (N = {', '.join(map(str, sorted(counts)))})")
    count = counts.pop()
    seen: dict[int, str] = {}
    for report in shards:
        assert report.facts.shard is not None
        index = report.facts.shard[0]
        if index in seen:
            raise ReportProblem(f"{seen[index]} and {report.path} are both shard {index}/{count}")
        seen[index] = report.path
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
    if missing:
        raise ReportProblem(f"shard {', '.join(missing)} missing: a merge needs every share of the run")
    if len({r.facts.seed for r in shards}) != 1:
        raise ReportProblem("the shards have different seeds: they are not shares of one run")


def _check_alike(reports: list[Report]) -> None:
    """Reports judged under different rules cannot give one verdict."""
    for name, values in (
        ("--strict", {r.facts.strict for r in reports}),
        ("--only", {tuple(r.facts.only) for r in reports}),
        ("--allow-unchecked", {r.facts.allow_unchecked for r in reports}),
    ):
        if len(values) > 1:
            raise ReportProblem(f"the reports differ in {name}: they were not judged alike")
