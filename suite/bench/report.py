"""A benchmark's figures as JSON (described by a JSON Schema shipped beside
the conformance report's, ``suite/report/schema/bench-1.json``) and as
tables on the terminal.

The JSON is the record: the HTML page and the tables are drawn from it, so
whatever a reader sees can be traced to a number in it. Latencies are in
seconds and memory in bytes there; the tables round them for people.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
from rich.console import Console
from rich.table import Table

from .c10k import C10kResult
from .matrix import CHURN_SLOTS, Plan, TargetBench

__all__ = [
    "SCHEMA",
    "Facts",
    "exit_code",
    "holdings",
    "kibibytes",
    "load_json",
    "mebibytes",
    "milliseconds",
    "print_tables",
    "rate",
    "schema",
    "to_json",
    "write_json",
]

SCHEMA = "sockspec-bench/1"


@dataclass(frozen=True)
class Facts:
    """What the run was, beside its figures: the machine and the method."""

    profile: str
    drivers: int
    descriptors: dict[str, int]  # RLIMIT_NOFILE: soft (as raised), hard (-1: none), raised_from
    load_before: list[float]  # the 1, 5 and 15 minute load averages when it began: others sharing the cores
    started: float  # time.time()


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every bench report is valid against."""
    text = files("suite.report").joinpath("schema/bench-1.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def to_json(
    targets: list[TargetBench], c10k: list[C10kResult], plan: Plan | None, facts: Facts, interrupted: bool
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(facts.started)),
        "interrupted": interrupted,
        "profile": facts.profile,
        "machine": {
            "cpus": _cpus(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_before": [round(value, 2) for value in facts.load_before],
            "descriptors": facts.descriptors,
        },
        "method": _method(plan, facts) if plan is not None else None,
        "targets": [_target(target) for target in targets],
        "c10k": [_c10k(result) for result in c10k] if c10k else None,
        "time": round(time.time() - facts.started, 2),
    }


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _method(plan: Plan, facts: Facts) -> dict[str, Any]:
    return {
        "connections": plan.connections,
        "pipelines": plan.pipelines,
        "commands": plan.commands,
        "duration": plan.duration,
        "repeat": plan.repeat,
        "max_requests": plan.max_requests,
        "drivers": facts.drivers,
        "redis_benchmark": plan.redis_benchmark,
        "churn_slots": CHURN_SLOTS if plan.churn else None,
        "server_room": plan.room,
    }


def _target(target: TargetBench) -> dict[str, Any]:
    data = dataclasses.asdict(target)
    if target.kind == "address":
        data["unsupported"] = (
            "memory, threads and processes: UNSUPPORTED for an --address target (the suite did not start it, "
            "so it does not know its processes)"
        )
    return data


def _c10k(result: C10kResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["held"] = result.held
    data["rss_per_connection"] = result.per_connection(result.rss_before, result.rss_open)
    data["pss_per_connection"] = result.per_connection(result.pss_before, result.pss_open)
    return data


def write_json(document: dict[str, Any], path: Path) -> None:
    jsonschema.Draft202012Validator(schema()).validate(document)  # a report that breaks its schema is our bug
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def exit_code(document: dict[str, Any]) -> int:
    """2: a target could not be measured at all (it never started or answered);
    1: one misbehaved under load (a wrong reply, a connection it closed, an exit)
    or did not hold C10K; 0: every cell measured cleanly."""
    targets = document["targets"]
    if any(t["problem"] and not t["cells"] for t in targets):
        return 2
    if any(r["problem"] and not r["opened"] for r in document["c10k"] or []):
        return 2
    if any(t["problem"] or any(c["errors"] or c["closed"] for c in t["cells"]) for t in targets):
        return 1
    return 1 if any(not r["held"] for r in document["c10k"] or []) else 0


# ---- the terminal ------------------------------------------------------------------------------


def print_tables(document: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=160)
    targets = document["targets"]
    if targets:
        method = document["method"]
        for command in method["commands"]:
            for depth in method["pipelines"]:
                if any(c["command"] == command and c["pipeline"] == depth for t in targets for c in t["cells"]):
                    _print(console, f"{command.upper()}, pipeline {depth}: requests/s, and p50 / p99 latency in ms")
                    console.print(_throughput_table(targets, command, depth, method["connections"]))
        largest = max(method["connections"])
        _print(console, f"What each server's process tree holds, idle and at {largest} connections; connection churn")
        console.print(_cost_table(targets, largest))
        compared = _redis_benchmark_table(targets)
        if compared is not None:
            _print(console, "The suite's load generator beside redis-benchmark: requests/s, p50 / p99 ms")
            console.print(compared)
        for target in targets:
            if target["problem"]:
                console.print(f"[bold red]{target['name']}[/]: {target['problem']}", highlight=False)
    if document["c10k"]:
        _print(console, "C10K: every connection open at once, each answering a PING and a GET")
        console.print(_c10k_table(document["c10k"]))
    load = document["machine"]["load_before"]
    console.print(
        f"{document['machine']['cpus']} CPUs; load average when it began {load[0]:.2f} (1 min), {load[2]:.2f} "
        f"(15 min); {document['time']:.0f} s"
        + ("; INTERRUPTED: the figures so far" if document["interrupted"] else ""),
        highlight=False,
    )


def _print(console: Console, title: str) -> None:
    console.print(f"\n[bold]{title}[/]", highlight=False)


def _throughput_table(targets: list[dict[str, Any]], command: str, depth: int, counts: list[int]) -> Table:
    table = Table()
    table.add_column("server")
    for count in counts:
        table.add_column(f"{count} conn.", justify="right")
    for target in targets:
        cells = {c["connections"]: c for c in target["cells"] if c["command"] == command and c["pipeline"] == depth}
        if not cells:
            continue
        table.add_row(target["name"], *(_cell_text(cells.get(count)) for count in counts))
    return table


def _cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    text = f"{rate(cell['throughput'])}\n{milliseconds(cell['p50'])} / {milliseconds(cell['p99'])}"
    if cell["starved"]:
        text += f"\n[yellow]{cell['starved']} starved[/]"
    if cell["errors"] or cell["closed"]:
        text += f"\n[red]{cell['errors']} err, {cell['closed']} closed[/]"
    return text


def holdings(target: dict[str, Any], largest: int) -> dict[str, Any]:
    """What a server held: RSS idle, and at the peak of its ``largest``-connection
    cells its RSS, threads and processes; and its churn (None where not measured)."""
    widest = [cell for cell in target["cells"] if cell["connections"] == largest]
    return {
        "name": target["name"],
        "idle_rss": target["idle_rss"],
        "peak_rss": max((c["rss"] or 0 for c in widest), default=0) or None,
        "idle_pss": target["idle_pss"],
        "pss": target["pss"].get(str(largest)),
        "threads": max((c["threads"] or 0 for c in widest), default=0) or None,
        "processes": max((c["processes"] or 0 for c in widest), default=0) or None,
        "churn": target["churn"],
    }


def _cost_table(targets: list[dict[str, Any]], largest: int) -> Table:
    table = Table()
    columns = ("server", "RSS idle", f"RSS peak at {largest}", "PSS idle", f"PSS at {largest}")
    for column in (*columns, "threads", "processes", "churn conn/s", "p99"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for target in targets:
        held = holdings(target, largest)
        churn = held["churn"]
        table.add_row(
            held["name"],
            mebibytes(held["idle_rss"]),
            mebibytes(held["peak_rss"]),
            mebibytes(held["idle_pss"]),
            mebibytes(held["pss"]),
            str(held["threads"] or "-"),
            str(held["processes"] or "-"),
            rate(churn["rate"]) if churn else "-",
            milliseconds(churn["p99"]) if churn else "-",
        )
    return table


def _redis_benchmark_table(targets: list[dict[str, Any]]) -> Table | None:
    rows = []
    for target in targets:
        for cell in target["cells"]:
            other = cell["redis_benchmark"]
            if other is None:
                continue
            ours = f"{rate(cell['throughput'])}  {milliseconds(cell['p50'])} / {milliseconds(cell['p99'])}"
            if other["throughput"] is None:
                theirs, ratio = f"[dim]{other['problem']}[/]", "-"
            else:
                theirs = f"{rate(other['throughput'])}  {milliseconds(other['p50'])} / {milliseconds(other['p99'])}"
                ratio = f"{cell['throughput'] / other['throughput']:.2f}" if other["throughput"] else "-"
            what = f"{cell['command'].upper()} P{cell['pipeline']}"
            rows.append((target["name"], what, str(cell["connections"]), ours, theirs, ratio))
    if not rows:
        return None
    table = Table()
    for column in ("server", "cell", "conn.", "sockspec", "redis-benchmark", "ratio"):
        table.add_column(column, justify="right" if column in ("conn.", "ratio") else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _c10k_table(results: list[dict[str, Any]]) -> Table:
    table = Table()
    for column in (
        "server",
        "held",
        "open",
        "time to open",
        "GET p50 / p99 ms",
        "RSS before → open",
        "RSS / conn.",
        "PSS / conn.",
        "threads",
        "processes",
    ):
        table.add_column(column, justify="left" if column in ("server", "held") else "right")
    for result in results:
        held = "[green]yes[/]" if result["held"] else f"[red]no[/] {result['problem'] or _failures(result)}"
        table.add_row(
            result["name"],
            held,
            f"{result['opened']:,} of {result['connections']:,}",
            f"{result['open_seconds']:.1f} s" if result["open_seconds"] is not None else "-",
            f"{milliseconds(result['get_p50'])} / {milliseconds(result['get_p99'])}",
            f"{mebibytes(result['rss_before'])} → {mebibytes(result['rss_open'])}",
            kibibytes(result["rss_per_connection"]),
            kibibytes(result["pss_per_connection"]),
            str(result["threads"] or "-"),
            str(result["processes"] or "-"),
        )
    return table


def _failures(result: dict[str, Any]) -> str:
    reasons = [f"{count} {reason}" for reason, count in result["failures"].items()]
    if result["get_unanswered"] or result["get_errors"]:
        reasons.append(f"GET: {result['get_unanswered']} unanswered, {result['get_errors']} wrong")
    return "; ".join(reasons)


def rate(value: float | None) -> str:
    """Requests per second, for people: 950, 1.2k, 45k, 1.85M."""
    if value is None:
        return "-"
    if value >= 1e7:
        return f"{value / 1e6:.0f}M"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    milliseconds = seconds * 1e3
    return f"{milliseconds:.2f}" if milliseconds < 10 else f"{milliseconds:.0f}"


def mebibytes(size: float | None) -> str:
    return "-" if size is None else f"{size / 2**20:.1f} MiB"


def kibibytes(size: float | None) -> str:
    return "-" if size is None else f"{size / 1024:.1f} KiB"


def load_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document
