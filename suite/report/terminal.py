"""The summary at the end of a run: one line per target and every
requirement that did not pass."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from ..verdicts import Verdict
from .results import TargetResult

STYLE = {
    Verdict.PASS: "green",
    Verdict.INFO: "cyan",
    Verdict.UNSUPPORTED: "yellow",
    Verdict.NON_STRICT: "magenta",
    Verdict.FAIL: "bold red",
    Verdict.ERROR: "bold white on red",
}


def render(targets: list[TargetResult], verbose: bool, color: bool) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, width=120, no_color=not color)
    overview = Table(title="sockspec: one verdict per requirement", show_lines=False)
    for column in ("target", "conformance", "PASS", "FAIL", "NON-STRICT", "UNSUPPORTED", "INFO", "ERROR"):
        overview.add_column(column)
    for target in targets:
        c = target.counts()
        overview.add_row(
            target.name,
            target.conformance(),
            str(c["PASS"]),
            str(c["FAIL"]),
            str(c["NON-STRICT"]),
            str(c["UNSUPPORTED"]),
            str(c["INFO"]),
            str(c["ERROR"]),
        )
    console.print(overview)
    for target in targets:
        rows = [r for r in target.results if verbose or r.verdict not in (Verdict.PASS,)]
        if not rows:
            continue
        table = Table(title=f"{target.name}: requirements that did not simply pass" if not verbose else target.name)
        for column in ("requirement", "level", "verdict", "title", "detail"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(r.id, r.level, f"[{STYLE[r.verdict]}]{r.verdict.value}[/]", r.title, r.detail[:160])
        console.print(table)
    return buffer.getvalue()
