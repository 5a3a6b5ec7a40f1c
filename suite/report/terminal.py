"""The summary at the end of a run, written to be read in seconds.

Per target, in this order: what to fix first, the requirements that did not
pass, the UNSUPPORTED ones grouped by reason (one line per reason), where the
optional features stand, and the level with why. A run that checked part of
the spec, stopped early or was interrupted says so instead of a level.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..verdicts import Verdict
from . import roots
from .results import RequirementResult, RunFacts, TargetResult

__all__ = ["WIDTH", "render"]

WIDTH = 120  # the summary never needs more columns than this
FIX_FIRST_SHOWN = 3

STYLE = {
    Verdict.PASS: "green",
    Verdict.INFO: "cyan",
    Verdict.UNSUPPORTED: "yellow",
    Verdict.NON_STRICT: "magenta",
    Verdict.FAIL: "bold red",
    Verdict.ERROR: "bold white on red",
}
LEVEL_STYLE = {"full": "bold green", "core": "bold yellow", "unchecked": "bold magenta", "none": "bold red"}
FEATURE_STANDINGS = ("passed", "failed", "not checked", "not declared")


def render(
    targets: list[TargetResult],
    verbose: bool,
    color: bool,
    *,
    only: Sequence[str] = (),
    interrupted: bool = False,
    stopped: str = "",
    strict: bool = False,
    allow_unchecked: bool = False,
    facts: RunFacts | None = None,
) -> str:
    """The whole summary as text. ``only`` is the --only patterns of a partial
    run, ``interrupted`` a run ended by Ctrl-C or SIGTERM, ``stopped`` why a run
    stopped early on its own (-x, --area-by-area); each withholds the level.
    ``facts`` says all of that at once (and more: a shard)."""
    facts = facts or RunFacts(
        strict=strict, only=list(only), interrupted=interrupted, stopped=stopped, allow_unchecked=allow_unchecked
    )
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=WIDTH, highlight=False, emoji=False)
    if facts.withheld():
        console.print(Text(facts.withheld() or "", style="bold yellow"))
    console.print(_overview(targets, facts))
    for target in targets:
        _render_target(console, target, facts, verbose)
    return buffer.getvalue()


def _overview(targets: list[TargetResult], facts: RunFacts) -> Table:
    overview = Table(title="sockspec: one verdict per requirement")
    for column in ("target", "level", "PASS", "FAIL", "NON-STRICT", "UNSUPPORTED", "INFO", "ERROR"):
        overview.add_column(column)
    for target in targets:
        counts = target.counts()
        level = facts.level(target)
        shown = Text(level, style=LEVEL_STYLE[level]) if level else Text(_withheld_word(facts), style="yellow")
        overview.add_row(
            target.name,
            shown,
            *(str(counts[v.value]) for v in (Verdict.PASS, Verdict.FAIL, Verdict.NON_STRICT)),
            *(str(counts[v.value]) for v in (Verdict.UNSUPPORTED, Verdict.INFO, Verdict.ERROR)),
        )
    return overview


def _withheld_word(facts: RunFacts) -> str:
    if facts.interrupted:
        return "interrupted"
    return "shard" if facts.shard else "stopped" if facts.stopped else "partial"


def _render_target(console: Console, target: TargetResult, facts: RunFacts, verbose: bool) -> None:
    console.print(Rule(Text(target.name, style="bold"), align="left"))
    if target.description:
        console.print(Text(target.description, style="dim"), no_wrap=True, overflow="ellipsis")
    stopped = _after_exit(target.results)
    followed = {requirement_id for ids in stopped.values() for requirement_id in ids}
    first = [r for r in roots.fix_first(target.results) if r.id not in followed]
    if stopped:
        console.print(Text("Fix first: the target stopped during the run", style="bold"))
        for cause, ids in stopped.items():
            console.print(
                f"  {cause.splitlines()[0]} Then {len(ids)} requirement(s) failed: {', '.join(ids[:6])}"
                + (" …" if len(ids) > 6 else ""),
                overflow="fold",
            )
    if first:
        console.print(Text("Fix first:" if not stopped else "Then:", style="bold"))
        for result in first[:FIX_FIRST_SHOWN]:
            console.print(_one_line(result), no_wrap=True, overflow="ellipsis")
        if len(first) > FIX_FIRST_SHOWN:
            console.print(f"  … and {len(first) - FIX_FIRST_SHOWN} more in the table below")
    rows = target.results if verbose else [r for r in target.results if _did_not_pass(r)]
    if rows:
        console.print(_requirements_table(target, rows, verbose))
    unsupported = _unsupported_by_reason(target.results)
    if unsupported:
        count = sum(len(ids) for ids in unsupported.values())
        console.print(Text(f"UNSUPPORTED ({count}), by reason:", style="bold"))
        for reason, ids in unsupported.items():
            line = Text("  ")
            line.append(reason, style=STYLE[Verdict.UNSUPPORTED])
            line.append(": " + ", ".join(ids))
            console.print(line)
    console.print(_features_line(target))
    console.print(_level_line(target, facts))
    unchecked = target.unchecked()
    if unchecked and not facts.allow_unchecked:
        console.print(
            Text(
                f"{len(unchecked)} MUST(s) could not be checked, so the run never exits 0 (it exits 2, or 1 where a "
                "MUST fails): make them checkable (the reasons above say how), or accept it with --allow-unchecked.",
                style="magenta",
            )
        )


def _after_exit(results: list[RequirementResult]) -> dict[str, list[str]]:
    """How the target exited -> the requirements that failed after it (their root)."""
    grouped: dict[str, list[str]] = {}
    for result in results:
        cause = next((c.cause for c in result.checks if c.verdict is result.verdict and c.cause), "")
        if cause and _did_not_pass(result):
            grouped.setdefault(cause, []).append(result.id)
    return grouped


def _did_not_pass(result: RequirementResult) -> bool:
    return result.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT)


def _one_line(result: RequirementResult) -> Text:
    line = Text("  ")
    line.append(f"{result.id:<13}", style=STYLE[result.verdict])
    line.append(result.title)
    if result.detail:
        line.append(f": {result.detail.splitlines()[0]}")
    return line


def _requirements_table(target: TargetResult, rows: list[RequirementResult], verbose: bool) -> Table:
    title = target.name if verbose else f"did not pass ({len(rows)})"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("requirement", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("title", overflow="fold", ratio=2)
    table.add_column("detail", overflow="fold", ratio=3)
    for result in rows:
        detail = Text(result.detail[:160])
        if result.may_follow_from:
            detail.append(f" (may follow from {', '.join(result.may_follow_from)})", style="dim")
        verdict = Text(result.verdict.value, style=STYLE[result.verdict])
        table.add_row(result.id, result.level, verdict, result.title, detail)
    return table


def _unsupported_by_reason(results: list[RequirementResult]) -> dict[str, list[str]]:
    """Reason -> the IDs that are UNSUPPORTED for it, in the spec's order."""
    grouped: dict[str, list[str]] = {}
    for result in results:
        if result.verdict is Verdict.UNSUPPORTED:
            grouped.setdefault(result.detail or "no reason given", []).append(result.id)
    return grouped


def _features_line(target: TargetResult) -> Text:
    """ "Optional features: passed framed, tls; not declared starttls, urgent"."""
    standing = target.features()
    line = Text("Optional features: ", style="bold")
    parts = []
    for state in FEATURE_STANDINGS:
        names = [feature for feature, s in standing.items() if s == state]
        if names:
            parts.append(f"{state} {', '.join(names)}")
    line.append("; ".join(parts))
    return line


def _level_line(target: TargetResult, facts: RunFacts) -> Text:
    level = facts.level(target)
    line = Text("Level: ", style="bold")
    line.append(facts.level_line(target), style=LEVEL_STYLE[level] if level else "yellow")
    return line
