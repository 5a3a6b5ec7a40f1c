"""The HTML report: a static site rendered from a JSON report (schema 2).

``render_html(report, directory)`` writes, from the very dict ``--json``
writes:

- ``index.html``: every target against the spec's areas, each cell coloured by
  its worst verdict; the architecture x image matrix of a matrix run; the
  run's facts (seed, strictness, exit code) and, prominently, whether the run
  was partial, stopped, interrupted or one shard, so that no level is read
  into it;
- ``target-<slug>.html``: one per target, every requirement by area, what the
  target declared, and the concurrency pictures of its checks;
- ``case-<slug>-<ID>.html``: one per requirement that did not pass, with the
  spec's text, expected against actual, the transcripts, and the re-run line.

The pages are self-contained (the style sheet is inlined, there is no script
and nothing is fetched), so they work from ``file://`` and as a CI artefact.
Every string of the report reaches the page through Jinja's autoescaping: a
transcript holds whatever the target sent. Python prepares what each page
shows (including the timelines' geometry); the templates in ``templates/``
only lay it out. Rendering is deterministic: the same report gives the same
files, byte for byte.

This module reads the report dict and the spec; it never imports the
plugin or runs anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .. import requirements
from ..verdicts import Verdict, worst
from . import grades

__all__ = ["render_html", "slugs", "spec_blocks", "timeline_geometry"]

SCHEMA = 2

# Symbols beside the colours, so that no verdict is told by its colour alone.
SYMBOL = {"PASS": "✓", "INFO": "i", "UNSUPPORTED": "?", "NON-STRICT": "~", "FAIL": "✕", "ERROR": "!"}
# Best to worst, as suite.verdicts ranks them; a cell lists its counts in this order.
VERDICT_ORDER = tuple(v.value for v in Verdict)
# The verdicts that get a case page.
NOT_PASSED = frozenset({"FAIL", "NON-STRICT", "ERROR"})

TIMELINE_WIDTH = 760
# A case page shows this many transcripts of a check; the rest are one click away.
OPEN_TRANSCRIPTS = 3
# How a timeline's bar ended, in the legend's words (see _bar_kind).
LEGEND = (
    ("answered", "answered"),
    ("refused", "error reply (-ERR)"),
    ("broken", "reset or closed"),
    ("open", "no reply"),
)


def render_html(report: dict[str, Any], directory: Path) -> list[Path]:
    """Render ``report`` (the dict ``--json`` writes, schema 2) into
    ``directory`` (created if missing) and return the files written, the
    index first. Files of an earlier report in the same directory are left
    alone; only this report's pages link to each other.

    Example (``sockspec run --html DIR`` does this)::

        render_html(json.loads(Path("report.json").read_text()), Path("html"))
    """
    if report.get("schema") != SCHEMA:
        raise ValueError(
            f"the HTML report is rendered from a schema {SCHEMA} JSON report, not {report.get('schema')!r}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    env = _environment()
    site = _Site(report)
    pages: list[tuple[str, str, dict[str, Any]]] = [
        ("index.html", "index.html", site.index()),
        ("grades.html", "grades.html", site.grades()),
    ]
    for target in report["targets"]:
        pages.append((site.target_page(target), "target.html", site.target(target)))
        for result in target["results"]:
            if result["verdict"] in NOT_PASSED:
                pages.append((site.case_page(target, result["id"]), "case.html", site.case(target, result)))
    written = []
    for name, template, context in pages:
        path = directory / name
        path.write_text(env.get_template(template).render(context), encoding="utf-8", newline="\n")
        written.append(path)
    return written


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("suite.report", "templates"),
        autoescape=True,  # every page, every string: the report carries what the target sent
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["seconds"] = _seconds
    env.filters["number"] = _number
    env.globals["SYMBOL"] = SYMBOL
    env.globals["LEGEND"] = LEGEND
    env.globals["OPEN_TRANSCRIPTS"] = OPEN_TRANSCRIPTS
    return env


# ---- names ---------------------------------------------------------------------------------


def slugs(names: Iterable[str]) -> dict[str, str]:
    """A file-name-safe slug for each name, unique even on a file system that
    ignores case: "evented@bookworm" -> "evented-bookworm", "a/b" -> "a-b"; a
    second name that would take the same slug gets "-2" (in the given order).

    >>> slugs(["evented@bookworm", "Evented@Bookworm"])
    {'evented@bookworm': 'evented-bookworm', 'Evented@Bookworm': 'evented-bookworm-2'}
    """
    taken: set[str] = set()
    chosen: dict[str, str] = {}
    for name in names:
        base = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or "target"
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        chosen[name] = slug
    return chosen


# ---- what each page shows --------------------------------------------------------------------


class _Site:
    """The report, with the names of its pages: builds each page's context."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        self.slug = slugs(t["name"] for t in report["targets"])
        self.areas = _areas(report)

    def target_page(self, target: dict[str, Any]) -> str:
        return f"target-{self.slug[target['name']]}.html"

    def case_page(self, target: dict[str, Any], requirement_id: str) -> str:
        return f"case-{self.slug[target['name']]}-{requirement_id}.html"

    def _case_link(self, target: dict[str, Any], requirement_id: str) -> str | None:
        """The case page of a requirement of this target, when it has one."""
        for result in target["results"]:
            if result["id"] == requirement_id and result["verdict"] in NOT_PASSED:
                return self.case_page(target, requirement_id)
        return None

    def run(self) -> dict[str, Any]:
        """What every page's header says about the run."""
        report = self.report
        summary = report["summary"]
        return {
            "banners": _banners(report),
            "sockspec": report["sockspec"],
            "created": report["created"],
            "seed": summary["seed"],
            "strict": summary["strict"],
            "exit_code": summary["exit_code"],
            "time": summary.get("time"),
            "targets": summary["targets"],
            "requirements": summary["requirements"],
            "verdicts": _counts(summary["verdicts"]),
        }

    def _target_head(self, target: dict[str, Any]) -> dict[str, Any]:
        conformance = target["conformance"]
        return {
            "name": target["name"],
            "kind": target["kind"],
            "description": target["target"],
            "page": self.target_page(target),
            "image": target["image"] or _image(target["environment"]),
            "arch": target["arch"],
            "conformance": conformance or "no level",
            "conformance_class": f"level-{conformance or 'nolevel'}",
            "level": target["level"],
            "time": target["time"],
            "counts": _counts(target["counts"]),
            "fix_first": [(i, self._case_link(target, i)) for i in target["fix_first"]],
        }

    # -- index.html

    def index(self) -> dict[str, Any]:
        rows = []
        for target in self.report["targets"]:
            by_area: dict[str, list[str]] = {}
            for result in target["results"]:
                by_area.setdefault(result["area"], []).append(result["verdict"])
            cells = [
                _cell(area, by_area.get(area, []), f"{self.target_page(target)}#area-{area}") for area in self.areas
            ]
            rows.append({**self._target_head(target), "cells": cells})
        not_passed = [
            {"target": target["name"], **self._row(target, result)}
            for target in self.report["targets"]
            for result in target["results"]
            if result["verdict"] in NOT_PASSED
        ]
        return {
            "title": "sockspec report",
            "not_passed": not_passed,
            "run": self.run(),
            "areas": self.areas,
            "rows": rows,
            "matrix": self._matrix(),
            "home": None,
        }

    # -- grades.html

    def grades(self) -> dict[str, Any]:
        targets = {t["name"]: t for t in self.report["targets"]}
        table = []
        for row in grades.rows(self.report):
            target = targets[row["target"]]
            head = self._target_head(target)
            table.append(
                {
                    **row,
                    "page": head["page"],
                    "conformance": head["conformance"],
                    "conformance_class": head["conformance_class"],
                    "level": head["level"],
                    "fix_first_page": self._case_link(target, row["fix_first"]) if row["fix_first"] else None,
                }
            )
        return {"title": "sockspec grade table", "run": self.run(), "rows": table, "verdicts": grades.VERDICTS}

    def _matrix(self) -> dict[str, Any] | None:
        matrix = self.report.get("matrix")
        if not matrix:
            return None
        pages = {t["name"]: self.target_page(t) for t in self.report["targets"]}
        cells = {(c["arch"], c["image"]): c for c in matrix["cells"]}
        images = []
        for image in matrix["images"]:
            mine = [c for c in matrix["cells"] if c["image"] == image]
            images.append(
                {
                    "key": image,
                    "name": next((c["image_name"] for c in mine if c.get("image_name")), None),
                    "python": next((c["python"] for c in mine if c.get("python")), None),
                    "openssl": next((c["openssl"] for c in mine if c.get("openssl")), None),
                    "libc": next((c["libc"] for c in mine if c.get("libc")), None),
                }
            )
        rows = []
        for arch in matrix["archs"]:
            row: list[dict[str, Any] | None] = []
            for image in matrix["images"]:
                cell = cells.get((arch, image))
                if cell is None:
                    row.append(None)
                    continue
                verdict = _worst(v for v, n in cell["counts"].items() if n)
                row.append(
                    {
                        "target": cell["target"],
                        "page": pages.get(cell["target"]),
                        "conformance": cell["conformance"] or "no level",
                        "conformance_class": f"level-{cell['conformance'] or 'nolevel'}",
                        "passes_every_must": cell["passes_every_must"],
                        "verdict": verdict,
                        "counts": _counts(cell["counts"]),
                    }
                )
            rows.append({"arch": arch, "cells": row})
        differences = [
            {
                "arch": d["arch"],
                "id": d["id"],
                "verdicts": [d["verdicts"].get(image, "-") for image in matrix["images"]],
            }
            for d in matrix.get("differences", [])
        ]
        return {"images": images, "rows": rows, "differences": differences}

    # -- target-<slug>.html

    def target(self, target: dict[str, Any]) -> dict[str, Any]:
        sections = []
        for area in self.areas:
            results = [r for r in target["results"] if r["area"] == area]
            if not results:
                continue
            sections.append(
                {
                    "area": area,
                    "cell": _cell(area, [r["verdict"] for r in results], f"#area-{area}"),
                    "results": [self._row(target, r) for r in results],
                }
            )
        pictures = []
        drawn: set[str] = set()
        for result in target["results"]:
            for check in result["checks"]:
                if check["nodeid"] in drawn:
                    continue  # a check that judges several requirements is drawn once, under the first
                drawn.add(check["nodeid"])
                for timeline in check["timelines"]:
                    pictures.append(
                        {
                            "id": result["id"],
                            "check": _check_name(check["nodeid"]),
                            "verdict": check["verdict"],
                            "timeline": timeline,
                        }
                    )
        return {
            "title": f"{target['name']}: sockspec report",
            "run": self.run(),
            "target": self._target_head(target),
            "declared": target["declared"],
            "features": target["features"],
            "environment": target["environment"],
            "unchecked": target["unchecked"],
            # the rest are shown in their requirement's row
            "measurements": [m for m in target["measurements"] if not m.get("requirement")],
            "sections": sections,
            "pictures": [{**p, **_picture(p["timeline"], n)} for n, p in enumerate(pictures, start=1)],
            "home": "index.html",
        }

    def _row(self, target: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        measurements = [m for c in result["checks"] for m in c["measurements"]]
        return {
            "id": result["id"],
            "level": result["level"],
            "title": result["title"],
            "feature": result["feature"],
            "verdict": result["verdict"],
            "detail": result["detail"],
            "time": result["time"],
            "measurements": measurements,
            "case": self._case_link(target, result["id"]),
            "may_follow_from": result["may_follow_from"],
        }

    # -- case-<slug>-<ID>.html

    def case(self, target: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        try:
            spec = requirements.get(result["id"])
            text = spec_blocks(spec.text)
        except KeyError:  # a report from another version of the spec
            text = []
        checks = []
        drawn = 0  # timelines on the page so far: each picture has its own id
        for check in result["checks"]:
            if check["verdict"] not in NOT_PASSED:
                continue
            pictures = [_picture(t, drawn + n) for n, t in enumerate(check["timelines"], start=1)]
            drawn += len(pictures)
            checks.append(
                {
                    **check,
                    "name": _check_name(check["nodeid"]),
                    "failure": _failure(check["failure"]),
                    "pictures": pictures,
                }
            )
        return {
            "title": f"{result['id']} on {target['name']}: sockspec report",
            "run": self.run(),
            "target": self._target_head(target),
            "result": result,
            "spec_text": text,
            "checks": checks,
            "prerequisites": [(i, self._case_link(target, i)) for i in result["may_follow_from"]],
            "seed": self.report["summary"]["seed"],
            "home": "index.html",
        }


def _banners(report: dict[str, Any]) -> list[tuple[str, str]]:
    """What makes the run's results no level, said before anything else."""
    banners = []
    if report["interrupted"]:
        banners.append(
            ("interrupted", "Interrupted: the run did not finish. Results are incomplete. No level is claimed.")
        )
    if report["stopped"]:
        banners.append(("stopped", f"Stopped early: {report['stopped']}. No level is claimed."))
    if report["partial"]:
        only = ", ".join(report["partial"]["only"])
        banners.append(("partial", f"Partial run: only {only} was checked. No level is claimed."))
    if report["shard"]:
        shard = f"Shard {report['shard']['index']} of {report['shard']['count']}"
        banners.append(("shard", f"{shard}: one part of a run; merge the shards for a level. No level is claimed."))
    return banners


def _image(environment: dict[str, str]) -> str | None:
    """The image a target ran in, from its environment ("local" is none)."""
    image = environment.get("image")
    return image if image and image != "local" else None


def _areas(report: dict[str, Any]) -> list[str]:
    """The areas any target has results in, in the spec's order (an area the
    spec does not know goes last, by name)."""
    spec_order = list(dict.fromkeys(r.area for r in requirements.load().values()))
    present = {r["area"] for t in report["targets"] for r in t["results"]}
    known = [a for a in spec_order if a in present]
    return known + sorted(present - set(spec_order))


def _worst(verdicts: Iterable[str]) -> str | None:
    found = [Verdict(v) for v in verdicts]
    return worst(found).value if found else None


def _counts(counts: dict[str, int]) -> list[dict[str, Any]]:
    """The non-zero counts, best verdict first: "12 ✓ 1 ✕"."""
    return [{"verdict": v, "count": counts[v], "symbol": SYMBOL[v]} for v in VERDICT_ORDER if counts.get(v)]


def _cell(area: str, verdicts: list[str], href: str) -> dict[str, Any] | None:
    """One target's standing in one area: its worst verdict and the counts."""
    if not verdicts:
        return None
    counts = {v: verdicts.count(v) for v in VERDICT_ORDER}
    shown = _counts(counts)
    return {
        "area": area,
        "verdict": _worst(verdicts),
        "counts": shown,
        "href": href,
        "title": f"{area}: " + ", ".join(f"{c['count']} {c['verdict']}" for c in shown),
    }


def _check_name(nodeid: str) -> str:
    """The check's function, as -k takes it: "test_x" from "suite/checks/test_frame.py::test_x[evented]"."""
    return nodeid.rsplit("::", 1)[-1].split("[", 1)[0]


def _picture(timeline: dict[str, Any], number: int) -> dict[str, Any]:
    """A timeline as a page draws it: its words, its geometry, and an id of
    its own on the page (its SVG's hatching pattern is referred to by id)."""
    return {
        "uid": f"timeline-{number}",
        "title": timeline["title"],
        "note": timeline["note"],
        "geometry": timeline_geometry(timeline, TIMELINE_WIDTH),
    }


def _failure(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    """The structured Violation, with its caret line and each transcript's
    "omitted" note placed where the records were left out (the middle: a long
    transcript keeps its head and its tail)."""
    if failure is None:
        return None
    caret = failure["caret"]
    transcripts = []
    for transcript in failure["transcripts"]:
        events = transcript["events"]
        middle = len(events) // 2 if transcript["omitted"] else None
        transcripts.append({**transcript, "gap_at": middle})
    actual = failure["actual"]
    split = caret is not None and actual is not None and caret <= len(actual)
    return {
        **failure,
        "transcripts": transcripts,
        "caret_line": " " * caret + "^" if split else None,
        "actual_head": actual[:caret] if split else actual,
        "actual_tail": actual[caret:] if split else "",
    }


# ---- the spec's text -----------------------------------------------------------------------

_FENCE = re.compile(r"^```")
_CODE_SPAN = re.compile(r"`([^`]+)`")


def spec_blocks(text: str) -> list[dict[str, Any]]:
    """A requirement's text from PROTOCOL.md as blocks a template can lay out
    without writing HTML: paragraphs (lines joined; `code` spans kept apart),
    code fences (kept verbatim) and tables (cells split).

    >>> spec_blocks("The server MUST answer `+PONG`.")
    [{'kind': 'paragraph', 'spans': [('text', 'The server MUST answer '), ('code', '+PONG'), ('text', '.')]}]
    """
    blocks: list[dict[str, Any]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif _FENCE.match(line):
            end = next((j for j in range(i + 1, len(lines)) if _FENCE.match(lines[j])), len(lines))
            blocks.append({"kind": "pre", "text": "\n".join(lines[i + 1 : end])})
            i = end + 1
        elif line.lstrip().startswith("|"):
            end = next((j for j in range(i, len(lines)) if not lines[j].lstrip().startswith("|")), len(lines))
            blocks.append(_table(lines[i:end]))
            i = end
        else:
            end = next(
                (
                    j
                    for j in range(i, len(lines))
                    if not lines[j].strip() or _FENCE.match(lines[j]) or lines[j].lstrip().startswith("|")
                ),
                len(lines),
            )
            blocks.append({"kind": "paragraph", "spans": _spans(" ".join(part.strip() for part in lines[i:end]))})
            i = end
    return blocks


def _spans(text: str) -> list[tuple[str, str]]:
    spans: list[tuple[str, str]] = []
    at = 0
    for match in _CODE_SPAN.finditer(text):
        if match.start() > at:
            spans.append(("text", text[at : match.start()]))
        spans.append(("code", match.group(1)))
        at = match.end()
    if at < len(text):
        spans.append(("text", text[at:]))
    return spans


def _table(lines: list[str]) -> dict[str, Any]:
    rows = [[_spans(cell.strip()) for cell in line.strip().strip("|").split("|")] for line in lines]
    rows = [row for row, line in zip(rows, lines, strict=True) if not re.fullmatch(r"[\s|:-]+", line)]
    return {"kind": "table", "head": rows[0] if rows else [], "rows": rows[1:]}


# ---- timelines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    row_height: float = 18  # per connection, for up to roomy_rows of them
    roomy_rows: int = 40
    rows_height: float = 720  # beyond that, the rows share this height (128 connections: 5.6 each)
    thinnest_row: float = 4
    label_height: float = 14  # a row thinner than a label gets its label every few rows
    top: int = 8
    axis: int = 26  # room under the rows for the tick labels
    right: int = 14
    char_width: float = 6.6  # of the labels' font, to size the label column

    def row(self, rows: int) -> float:
        if rows <= self.roomy_rows:
            return self.row_height
        return max(self.rows_height / rows, self.thinnest_row)


def timeline_geometry(timeline: dict[str, Any], width: int = TIMELINE_WIDTH) -> dict[str, Any]:
    """Where everything of a concurrency picture goes, in SVG user units:
    one row per connection (its label at the left; rows get thinner past
    40 connections, and only every few are labelled), a bar from each
    request's start to its end (the same origin for all), an open bar to the
    right edge when the reply never came, the check's bound as an x position,
    and the time axis's ticks (in ms). Times are scaled so that the latest
    known instant (an end, a start, the bound) sits a little left of the
    right edge, which leaves room for the open bars to show they run on.

    >>> g = timeline_geometry({"title": "t", "note": "", "bound": None,
    ...     "rows": [{"label": "c1", "bars": [{"start": 0.0, "end": None, "outcome": "no reply"}]}]}, 400)
    >>> bar = g["rows"][0]["bars"][0]
    >>> bar["open"], bar["x"] + bar["width"] == g["plot_right"]
    (True, True)
    """
    layout = _Layout()
    rows = timeline["rows"]
    longest = max((len(r["label"]) for r in rows), default=0)
    plot_left = round(min(max(longest * layout.char_width + 16, 64), width / 3))
    plot_right = width - layout.right
    instants = [b["start"] for r in rows for b in r["bars"]]
    instants += [b["end"] for r in rows for b in r["bars"] if b["end"] is not None]
    if timeline["bound"] is not None:
        instants.append(timeline["bound"])
    horizon = max([t for t in instants if t > 0], default=1.0)
    span = horizon * 1.08

    def x(seconds: float) -> float:
        return round(plot_left + max(seconds, 0.0) / span * (plot_right - plot_left), 2)

    row_height = layout.row(len(rows))
    bar_height = round(row_height * 2 / 3, 2)
    label_every = math.ceil(layout.label_height / row_height)
    drawn_rows = []
    for index, row in enumerate(rows):
        y = round(layout.top + index * row_height, 2)
        bars = []
        for bar in row["bars"]:
            start = x(bar["start"])
            open_ended = bar["end"] is None
            end = plot_right if open_ended else x(bar["end"])
            bars.append(
                {
                    "x": start,
                    "y": round(y + (row_height - bar_height) / 2, 2),
                    "width": round(max(end - start, 2.0), 2),
                    "height": bar_height,
                    "open": open_ended,
                    "kind": _bar_kind(bar),
                    "tooltip": _bar_tooltip(row["label"], bar),
                }
            )
        drawn_rows.append(
            {
                "label": row["label"],
                "labelled": index % label_every == 0,  # every row, unless they are too thin to read
                "y": y,
                "text_y": round(y + row_height / 2 + 4, 2),
                "bars": bars,
            }
        )
    plot_bottom = round(layout.top + len(rows) * row_height, 2)
    ticks = [{"x": x(ms / 1000), "label": f"{ms:g} ms"} for ms in _ticks(span * 1000)]
    bound = timeline["bound"]
    return {
        "width": width,
        "height": math.ceil(plot_bottom + layout.axis),
        "plot_left": plot_left,
        "plot_right": plot_right,
        "plot_top": layout.top,
        "plot_bottom": plot_bottom,
        "label_x": plot_left - 8,
        "rows": drawn_rows,
        "ticks": ticks,
        "tick_label_y": plot_bottom + 16,
        "kinds": sorted({bar["kind"] for row in drawn_rows for bar in row["bars"]}),
        "bound_x": x(bound) if bound is not None else None,
        "bound_label": f"bound {bound * 1000:g} ms" if bound is not None else None,
    }


def _ticks(span_ms: float, most: int = 8) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten, in ms) from 0 to span_ms."""
    if span_ms <= 0:
        return [0.0]
    magnitude = 10 ** math.floor(math.log10(span_ms))
    step = next(
        (m * magnitude / 10 for m in (1, 2, 5, 10, 20, 50, 100) if span_ms / (m * magnitude / 10) <= most),
        magnitude * 10,
    )
    return [round(n * step, 6) for n in range(int(span_ms / step) + 1)]


def _bar_kind(bar: dict[str, Any]) -> str:
    """How a request ended, for its colour: answered (+, $, :), an error reply
    (-ERR, as BUSY is), anything else that ended it (a reset, a close), or
    never (open)."""
    if bar["end"] is None:
        return "open"
    outcome = bar["outcome"]
    if outcome[:1] in ("+", "$", ":", "*"):
        return "answered"
    if outcome.startswith("-"):
        return "refused"
    return "broken"


def _bar_tooltip(label: str, bar: dict[str, Any]) -> str:
    start = bar["start"] * 1000
    if bar["end"] is None:
        return f"{label}: sent at {start:.0f} ms, {bar['outcome'] or 'no reply'}"
    return f"{label}: {start:.0f} ms to {bar['end'] * 1000:.0f} ms, {bar['outcome']}"


# ---- formatting ------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    """A duration as people read it: "3 ms", "1.25 s", "41.2 s", "2 min 5 s"."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def _number(value: float) -> str:
    return f"{value:g}"
