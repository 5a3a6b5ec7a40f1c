"""The JSON and JUnit reports, and reading a JSON report back.

The JSON report (schema 2) is described by ``schema/report-2.json``, shipped
in the package, and in the README. Both reports tell what kind of run they
come from (``RunFacts``): a run that checked part of the spec (``--only``),
one shard of it, or one that stopped early or was interrupted gets no
conformance level, and an interrupted run never reports exit code 0.
"""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ET
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..verdicts import Verdict
from . import roots
from .results import RunFacts, TargetResult, exit_code

__all__ = ["SCHEMA_VERSION", "RunFacts", "schema", "to_json", "write_json", "write_junit", "write_reports"]

SCHEMA_VERSION = 2


def schema(number: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the report, as shipped in the package."""
    text = resources.files("suite.report").joinpath(f"schema/report-{number}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def suite_version() -> str:
    try:
        return version("sockspec")
    except PackageNotFoundError:
        return "unknown"


def to_json(targets: list[TargetResult], facts: RunFacts, created: str | None = None) -> dict[str, Any]:
    """Schema 2. Schema 1's keys keep their meaning; every check now carries
    what explains it (its explanation, the structured failure with its
    transcripts, its measurements, its timelines and its time), so that a
    report can be merged, rendered as HTML or graded without the terminal."""
    totals = {v.value: 0 for v in Verdict}
    for target in targets:
        for verdict, count in target.counts().items():
            totals[verdict] += count
    return {
        "schema": SCHEMA_VERSION,
        "sockspec": suite_version(),
        "created": created or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "targets": [
            {
                "name": t.name,
                "kind": t.kind,
                "target": t.description,
                "declared": t.declared,
                "conformance": facts.level(t),
                "level": facts.level_line(t),
                "features": t.features(),
                "fix_first": [r.id for r in roots.fix_first(t.results)],
                "unchecked": [r.id for r in t.unchecked()],
                "problem": t.problem or None,
                "rerun": t.rerun,
                "counts": t.counts(),
                "time": t.time,
                "arch": t.arch,
                "image": t.image,
                "results": [r.to_json() for r in t.results],
                "measurements": t.measurements,
                "environment": t.environment,
            }
            for t in targets
        ],
        **({"matrix": matrix(targets, facts)} if any(t.image for t in targets) else {}),
        "interrupted": facts.interrupted,
        "partial": {"only": list(facts.only)} if facts.only else None,
        "stopped": facts.stopped or None,
        "shard": {"index": facts.shard[0], "count": facts.shard[1]} if facts.shard else None,
        "summary": {
            "targets": len(targets),
            "requirements": sum(len(t.results) for t in targets),
            "verdicts": totals,
            "strict": facts.strict,
            "seed": facts.seed,
            "exit_code": exit_code(targets, facts),
            "time": round(sum(t.time for t in targets), 4),
            "allow_unchecked": facts.allow_unchecked,
        },
    }


def matrix(targets: list[TargetResult], facts: RunFacts) -> dict[str, Any]:
    """The architecture x image matrix of containerised targets."""
    cells = [t for t in targets if t.image]
    return {
        "archs": sorted({t.arch for t in cells if t.arch}),
        "images": sorted({t.image for t in cells if t.image}),
        "cells": [
            {
                "arch": t.arch,
                "kind": t.kind,
                "image": t.image,
                "target": t.name,
                "conformance": facts.level(t),
                "passes_every_must": t.passes_every_must(),
                "counts": t.counts(),
                "image_name": t.environment.get("image"),
                "python": t.environment.get("python"),
                "openssl": t.environment.get("openssl"),
                "libc": t.environment.get("libc"),
            }
            for t in cells
        ],
        "differences": differences(cells),
    }


def differences(cells: list[TargetResult]) -> list[dict[str, Any]]:
    """Each requirement whose verdict for one server differs between images: the
    matrix's first news ("does my server behave the same on every image?")."""
    by_server: dict[str, dict[str, dict[str, str]]] = {}  # server -> image -> id -> verdict
    for target in cells:
        if target.arch and target.image:
            by_server.setdefault(target.arch, {})[target.image] = {r.id: r.verdict.value for r in target.results}
    found = []
    for server, images in by_server.items():
        if len(images) < 2:
            continue
        ids = sorted({i for verdicts in images.values() for i in verdicts}, key=roots.spec_order)
        for requirement_id in ids:
            seen = {image: verdicts.get(requirement_id, "-") for image, verdicts in sorted(images.items())}
            if len(set(seen.values())) > 1:
                found.append({"arch": server, "id": requirement_id, "verdicts": seen})
    return found


def write_reports(
    targets: list[TargetResult],
    facts: RunFacts,
    *,
    json_path: str | None = None,
    junit_path: str | None = None,
    html_dir: str | None = None,
) -> None:
    """Every report the run asked for; the HTML is drawn from the JSON's own dict."""
    report = to_json(targets, facts)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if junit_path:
        write_junit(junit_path, targets, facts)
    if html_dir:
        from .html import render_html  # noqa: PLC0415  (Jinja2 only for a run that asks for HTML)

        render_html(report, Path(html_dir))


def write_json(path: str, targets: list[TargetResult], facts: RunFacts) -> None:
    write_reports(targets, facts, json_path=path)


def write_junit(path: str, targets: list[TargetResult], facts: RunFacts) -> None:
    """One <testsuite> per target, one <testcase> per requirement. A broken
    requirement is a <failure>; only a harness problem is an <error>. The
    run's standing (level, or why none) is a property of each suite."""
    strict = facts.strict
    root = ET.Element("testsuites", name="sockspec", time=_seconds(sum(t.time for t in targets)))
    for target in targets:
        counts = target.counts()
        failures = sum(
            1 for r in target.results if r.verdict is Verdict.FAIL or (strict and r.verdict is Verdict.NON_STRICT)
        )
        suite = ET.SubElement(
            root,
            "testsuite",
            name=target.name,
            tests=str(len(target.results)),
            failures=str(failures),
            errors=str(counts["ERROR"]),
            skipped=str(counts["UNSUPPORTED"]),
            time=_seconds(target.time),
        )
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="sockspec.level", value=facts.level_line(target))
        ET.SubElement(properties, "property", name="sockspec.conformance", value=facts.level(target) or "")
        ET.SubElement(properties, "property", name="sockspec.target", value=target.description)
        if facts.seed is not None:
            ET.SubElement(properties, "property", name="sockspec.seed", value=str(facts.seed))
        ET.SubElement(
            properties,
            "property",
            name="sockspec.declared",
            value=",".join(f"{k}={v}" for k, v in target.declared.items()),
        )
        if facts.shard:
            ET.SubElement(properties, "property", name="sockspec.shard", value=f"{facts.shard[0]}/{facts.shard[1]}")
        if facts.interrupted:
            ET.SubElement(properties, "property", name="sockspec.interrupted", value="true")
        if facts.only:
            ET.SubElement(properties, "property", name="sockspec.only", value=",".join(facts.only))
        for result in target.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"sockspec.{target.name}",
                name=f"{result.id} {result.title}",
                time=_seconds(result.time),
            )
            text = "\n\n".join(c.explanation or c.detail for c in result.checks if c.verdict is result.verdict)
            if result.may_follow_from:
                text = f"(may follow from {', '.join(result.may_follow_from)}, which also failed)\n\n{text}"
            if result.verdict is Verdict.FAIL or (strict and result.verdict is Verdict.NON_STRICT):
                ET.SubElement(case, "failure", message=f"{result.level} broken: {result.detail}"[:500]).text = text
            elif result.verdict is Verdict.ERROR:
                ET.SubElement(case, "error", message=f"harness error: {result.detail}"[:500]).text = text
            elif result.verdict is Verdict.UNSUPPORTED:
                ET.SubElement(case, "skipped", message=result.detail[:500] or "unsupported")
            elif result.verdict is Verdict.NON_STRICT:
                ET.SubElement(case, "system-out").text = f"NON-STRICT (a SHOULD is broken): {text}"
            elif result.detail:
                ET.SubElement(case, "system-out").text = f"{result.verdict.value}: {result.detail}"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _seconds(value: float) -> str:
    return f"{value:.3f}"
