"""The text shown for a failing check: what the requirement says, what was
expected and what happened, the bytes on the wire, how the connection ended,
and how to run just this case again."""

from __future__ import annotations

import base64
import textwrap
from typing import Any

from ..escape import caret_column, escape, first_difference, with_caret
from ..probe import Violation
from ..requirements import Requirement
from ..verdicts import Verdict
from ..wire import Ending, Transcript
from .results import TargetResult


def explain(
    violation: Violation,
    requirements: list[Requirement],
    rerun: str,
    seed: int | None,
) -> str:
    out: list[str] = []
    for requirement in requirements:
        out.append(f"{requirement.id} ({requirement.level}) — {requirement.title}")
        if requirement.text:
            out.append(textwrap.indent(textwrap.shorten(requirement.text, 600, placeholder=" …"), "  "))
    out.append("")
    out.append(f"What went wrong: {violation.summary}")
    if violation.expected is not None or violation.actual is not None:
        out.extend(_expected_vs_actual(violation.expected, violation.actual))
    if violation.ending is not None and violation.ending is not Ending.OPEN:
        out.append(f"The connection ended with: {violation.ending.value}")
    if violation.context:
        out.append("")
        out.extend(violation.context)
    for transcript in violation.transcripts:
        out.append("")
        out.extend(render_transcript(transcript))
    out.append("")
    out.append(f"Re-run just this case: {rerun}")
    if seed is not None:
        out.append(f"Seed (Hypothesis and the suite's choices): {seed}")
    return "\n".join(out)


def structured(violation: Violation) -> dict[str, Any]:
    """The Violation as the JSON report carries it (schema 2): what ``explain``
    says in words, as data a grader's script or the HTML report can use."""
    offset = column = None
    if isinstance(violation.expected, bytes) and isinstance(violation.actual, bytes):
        offset = first_difference(violation.expected, violation.actual)
        if offset is not None:
            column = caret_column(violation.actual, offset)
    return {
        "summary": violation.summary,
        "expected": _shown(violation.expected),
        "actual": _shown(violation.actual),
        "caret": column,  # where the caret goes under "actual" as shown (escaped)
        "offset": offset,  # the first differing byte
        "ending": violation.ending.value if violation.ending not in (None, Ending.OPEN) else None,
        "context": list(violation.context),
        "transcripts": [transcript_events(t) for t in violation.transcripts],
    }


# A transcript in the JSON keeps its head and tail, as the terminal does, but more of them.
JSON_TRANSCRIPT_LIMIT = 400
# The exact bytes of one event, up to this many: a check that sends a 4 GiB claim's
# megabyte of payload must not make the report megabytes long (``size`` tells the rest).
JSON_EVENT_BYTES = 4096


def transcript_events(transcript: Transcript, limit: int = JSON_TRANSCRIPT_LIMIT) -> dict[str, Any]:
    records = transcript.records
    kept = records if len(records) <= limit else records[: limit // 2] + records[-limit // 2 :]
    return {
        "title": transcript.title,
        "label": transcript.label,
        "omitted": len(records) - len(kept),
        "events": [
            {
                "at": round(record.at, 6),
                "direction": record.direction,
                "text": escape(record.data) if record.direction != "--" else record.data.decode("utf-8", "replace"),
                "size": len(record.data),
                "base64": base64.b64encode(record.data[:JSON_EVENT_BYTES]).decode("ascii"),
            }
            for record in kept
        ],
    }


def _shown(value: object) -> str | None:
    if value is None:
        return None
    return escape(value) if isinstance(value, bytes) else str(value)


def _expected_vs_actual(expected: object, actual: object) -> list[str]:
    lines = []
    if isinstance(expected, bytes) and isinstance(actual, bytes):
        lines.append(f"  expected: {escape(expected)}")
        index = first_difference(expected, actual)
        if index is None:
            lines.append(f"  actual:   {escape(actual)}")
        else:
            caret = with_caret(actual, index, indent="            ").split("\n")
            lines.append("  actual:   " + caret[0].lstrip())
            lines.append(caret[1] + f" first unexpected byte (offset {index})")
        return lines
    if expected is not None:
        lines.append(f"  expected: {escape(expected) if isinstance(expected, bytes) else expected}")
    if actual is not None:
        lines.append(f"  actual:   {escape(actual) if isinstance(actual, bytes) else actual}")
    return lines


def render_transcript(transcript: Transcript, limit: int = 60) -> list[str]:
    lines = [transcript.title]
    records = transcript.records
    shown = records if len(records) <= limit else records[: limit // 2] + records[-limit // 2 :]
    for index, record in enumerate(shown):
        if len(records) > limit and index == limit // 2:
            lines.append(f"  … {len(records) - limit} records omitted …")
        text = escape(record.data) if record.direction != "--" else record.data.decode("utf-8", "replace")
        lines.append(f"  {record.at:8.3f}  {record.direction:<9} {text}")
    return lines


def failures_text(targets: list[TargetResult], strict: bool) -> str:
    """Every requirement that did not hold, explained once: the explanation of
    its first failing check, with the bytes on the wire. Failures that share
    one root (the target exited; an ERROR's reason) are explained once, with
    the IDs."""
    out: list[str] = []
    for target in targets:
        after_exit: dict[str, list[str]] = {}
        shared_errors: dict[str, list[str]] = {}
        for result in target.results:
            failed = result.verdict is Verdict.FAIL or (result.verdict is Verdict.NON_STRICT and strict)
            check = next((c for c in result.checks if c.verdict is result.verdict), None)
            if check is None or not (failed or result.verdict is Verdict.ERROR):
                continue
            if result.verdict is Verdict.ERROR:
                shared_errors.setdefault(check.explanation or result.detail, []).append(result.id)
            elif check.cause:
                after_exit.setdefault(check.cause, []).append(result.id)
            else:
                out.append(f"──── {target.name}: {result.id} {result.verdict.value} ────")
                out.append(check.explanation or check.detail)
                if result.may_follow_from:
                    roots = ", ".join(result.may_follow_from)
                    out.append(f"(This may follow from {roots}, which failed too: fix that first.)")
                out.append("")
        for cause, ids in after_exit.items():
            out += [f"──── {target.name}: the target stopped; then {', '.join(ids)} failed ────", cause, ""]
        for explanation, ids in shared_errors.items():
            out += [f"──── {target.name}: ERROR (not the target's fault) for {', '.join(ids)} ────", explanation, ""]
    return "\n".join(out)
