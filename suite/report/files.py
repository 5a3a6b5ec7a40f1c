"""The JSON and JUnit reports. The JSON schema is documented in the README.

Both tell what kind of run they come from (``RunFacts``): a run that checked
part of the spec (``--only``), stopped early or was interrupted gets no
conformance level, and an interrupted run never reports exit code 0.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..verdicts import Verdict
from . import roots
from .results import RunFacts, TargetResult, exit_code

__all__ = ["SCHEMA_VERSION", "RunFacts", "to_json", "write_json", "write_junit"]

SCHEMA_VERSION = 1


def to_json(targets: list[TargetResult], facts: RunFacts) -> dict[str, Any]:
    """Schema 1, extended without renaming: ``conformance`` is null when the run
    gives no level, and ``level`` says why in words; ``interrupted``, ``partial``
    and ``stopped`` describe the run."""
    totals = {v.value: 0 for v in Verdict}
    for target in targets:
        for verdict, count in target.counts().items():
            totals[verdict] += count
    return {
        "schema": SCHEMA_VERSION,
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
                "counts": t.counts(),
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
        "summary": {
            "targets": len(targets),
            "requirements": sum(len(t.results) for t in targets),
            "verdicts": totals,
            "strict": facts.strict,
            "seed": facts.seed,
            "exit_code": exit_code(targets, facts),
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
            }
            for t in cells
        ],
    }


def write_json(path: str, targets: list[TargetResult], facts: RunFacts) -> None:
    Path(path).write_text(json.dumps(to_json(targets, facts), indent=2) + "\n", encoding="utf-8")


def write_junit(path: str, targets: list[TargetResult], facts: RunFacts) -> None:
    """One <testsuite> per target, one <testcase> per requirement. A broken
    requirement is a <failure>; only a harness problem is an <error>. The
    run's standing (level, or why none) is a property of each suite."""
    strict = facts.strict
    root = ET.Element("testsuites", name="sockspec")
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
        )
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="sockspec.level", value=facts.level_line(target))
        if facts.interrupted:
            ET.SubElement(properties, "property", name="sockspec.interrupted", value="true")
        if facts.only:
            ET.SubElement(properties, "property", name="sockspec.only", value=",".join(facts.only))
        for result in target.results:
            case = ET.SubElement(
                suite, "testcase", classname=f"sockspec.{target.name}", name=f"{result.id} {result.title}"
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
