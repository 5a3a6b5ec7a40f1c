"""The benchmark's HTML page: for each command and pipeline depth, an SVG plot
of throughput against connection count with one line per server
(redis-server, the baseline, dashed), then what each server held, the
connection churn, redis-benchmark beside the suite's generator, and C10K.

Python works out every coordinate; ``suite/report/templates/bench.html``
only lays them out (the conformance report's style sheet, inlined). The page
has no script and fetches nothing, so it works from ``file://`` and as a CI
artefact; every string reaches it through Jinja's autoescaping. Drawn from
the JSON report alone, so the same figures give the same page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

from . import report
from .servers import BASELINE

__all__ = ["PAGE", "plot_geometry", "render"]

PAGE = "bench.html"
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 196, 16, 40  # the plot area's margins: the legend is on the right
# Okabe-Ito: told apart with the common colour blindnesses. The baseline is black and dashed.
COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999933", "#882255", "#44AA99")


def render(document: dict[str, Any], directory: Path) -> Path:
    """Write ``bench.html`` into ``directory`` (created if missing); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("suite.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["rate"] = report.rate
    env.filters["ms"] = report.milliseconds
    env.filters["mib"] = report.mebibytes
    env.filters["kib"] = report.kibibytes
    path = directory / PAGE
    path.write_text(env.get_template(PAGE).render(_context(document)), encoding="utf-8", newline="\n")
    return path


def _context(document: dict[str, Any]) -> dict[str, Any]:
    targets = document["targets"]
    method = document["method"]
    colours = _colours([t["name"] for t in targets] or [r["name"] for r in document["c10k"] or []])
    plots = []
    if method is not None and targets:
        for command in method["commands"]:
            for depth in method["pipelines"]:
                plots.append(
                    {
                        "title": f"{command.upper()}, pipeline {depth}",
                        "geometry": plot_geometry(targets, command, depth, method["connections"], colours),
                    }
                )
    return {
        "title": "sockspec bench",
        "document": document,
        "plots": plots,
        "targets": targets,
        "compared": [
            (target, cell) for target in targets for cell in target["cells"] if cell["redis_benchmark"] is not None
        ],
        "costs": [report.holdings(t, max(method["connections"])) for t in targets] if method is not None else [],
        "largest": max(method["connections"]) if method is not None else None,
        "c10k": document["c10k"] or [],
    }


def _colours(names: list[str]) -> dict[str, str]:
    others = [name for name in names if name != BASELINE]
    chosen = {name: COLOURS[index % len(COLOURS)] for index, name in enumerate(others)}
    chosen[BASELINE] = "#000000"
    return chosen


def plot_geometry(
    targets: list[dict[str, Any]], command: str, depth: int, counts: list[int], colours: dict[str, str]
) -> dict[str, Any]:
    """Everything the template needs to draw one plot: axes, ticks, one polyline
    per server (points where it was measured), and the legend."""
    series = []
    for target in targets:
        cells = {c["connections"]: c for c in target["cells"] if c["command"] == command and c["pipeline"] == depth}
        points = [(count, cells[count]) for count in counts if count in cells and cells[count]["throughput"] > 0]
        if points:
            series.append((target["name"], points))
    values = [cell["throughput"] for _, points in series for _, cell in points]
    low = math.floor(math.log10(min(values))) if values else 2
    high = math.ceil(math.log10(max(values))) if values else 6
    high = max(high, low + 1)
    inner_width, inner_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(count: int) -> float:
        index = counts.index(count)
        return round(LEFT + (inner_width * (index + 0.5) / len(counts)), 1)

    def y(value: float) -> float:
        return round(TOP + inner_height * (1 - (math.log10(value) - low) / (high - low)), 1)

    lines = []
    for order, (name, points) in enumerate(series):
        coordinates = [
            {
                "x": x(count),
                "y": y(cell["throughput"]),
                "tooltip": (
                    f"{name}, {count} connections: {report.rate(cell['throughput'])} requests/s, "
                    f"p50 {report.milliseconds(cell['p50'])} ms, p99 {report.milliseconds(cell['p99'])} ms"
                    + (f", {cell['starved']} connections starved" if cell["starved"] else "")
                ),
            }
            for count, cell in points
        ]
        lines.append(
            {
                "name": name,
                "colour": colours.get(name, "#555555"),
                "baseline": name == BASELINE,
                "points": coordinates,
                "polyline": " ".join(f"{p['x']},{p['y']}" for p in coordinates),
                "legend_y": TOP + 14 + 18 * order,
            }
        )
    ticks = [
        {"y": y(10.0**power * step), "label": report.rate(10.0**power * step), "major": step == 1}
        for power in range(low, high + 1)
        for step in (1, 2, 5)
        if low <= math.log10(10.0**power * step) <= high
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "legend_x": WIDTH - RIGHT + 14,
        "columns": [{"x": x(count), "label": str(count)} for count in counts],
        "ticks": ticks,
        "lines": lines,
    }
