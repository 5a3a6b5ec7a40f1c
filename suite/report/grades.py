"""The grade table: one row per target, for an instructor or a CI summary.

Each row says the target's level (or why it has none), its counts, the first
requirement to fix (the first of ``fix_first``, the spec's root-cause order),
its time and the one line that runs it again. The rows come from a JSON
report (schema 2) alone, so a merged report gives the same table as one run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .. import requirements

__all__ = ["COLUMNS", "rows", "write_csv", "write_json"]

VERDICTS = ("PASS", "FAIL", "NON-STRICT", "UNSUPPORTED", "ERROR", "INFO")
COLUMNS = ("target", "level", *VERDICTS, "fix_first", "fix_first_title", "time", "problem", "rerun")


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    table = []
    for target in report["targets"]:
        first = target["fix_first"][0] if target["fix_first"] else ""
        table.append(
            {
                "target": target["name"],
                "level": target["conformance"] or "no level",
                **{verdict: target["counts"][verdict] for verdict in VERDICTS},
                "fix_first": first,
                "fix_first_title": _title(first),
                "time": round(target["time"], 1),
                "problem": target.get("problem") or "",
                "rerun": target.get("rerun", ""),
            }
        )
    return table


def _title(requirement_id: str) -> str:
    try:
        return requirements.get(requirement_id).title if requirement_id else ""
    except KeyError:
        return ""


def write_csv(report: dict[str, Any], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows(report))


def write_json(report: dict[str, Any], path: Path) -> None:
    data = {"columns": list(COLUMNS), "rows": rows(report), "exit_code": report["summary"]["exit_code"]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
