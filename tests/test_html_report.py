"""The HTML report (suite/report/html.py), from real runs.

Three runs, each once per module, write a JSON report and the HTML pages
(``--html``): the evented reference server beside a mutant whose SLEEP blocks
its reactor (the concurrency checks: pictures with open bars, a staircase);
a handful of tiny checks through the plugin against the evented server, one
per verdict (a FAIL with bytes and a caret, a NON-STRICT, an ERROR, an
UNSUPPORTED, an INFO); and a server that answers with HTML. The pages are
read with the standard library's HTML parser (tests/html_support.py).
"""

from __future__ import annotations

import copy
import doctest
import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import suite.report.html
from suite import requirements
from suite.report.html import render_html, slugs, spec_blocks, timeline_geometry
from tests.html_support import REPO, Node, mutant_template, read_page, run_python, run_sockspec
from tests.report_support import validate_report


@dataclass
class Run:
    report: dict[str, Any]
    html: Path  # what --html wrote

    def page(self, name: str) -> Node:
        return read_page(self.html / name)

    def result(self, target: str, requirement_id: str) -> dict[str, Any]:
        (found,) = [
            r for t in self.report["targets"] if t["name"] == target for r in t["results"] if r["id"] == requirement_id
        ]
        return found


def _run(directory: Path, *args: str, exit_code: int) -> Run:
    result = run_sockspec(
        *args, "--seed", "1", "--json", str(directory / "report.json"), "--html", str(directory / "html")
    )
    assert result.returncode == exit_code, (result.stdout + result.stderr)[-3000:]
    return _read(directory)


def _read(directory: Path) -> Run:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    validate_report(report)
    return Run(report, directory / "html")


@pytest.fixture(scope="module")
def concurrency(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """evented, and a mutant of it that runs SLEEP on its reactor: CH-CONC-1 and 3 fail."""
    blocking = mutant_template("sleep-blocks-reactor", "evented")
    directory = tmp_path_factory.mktemp("concurrency")
    targets = ("--reference", "evented", "--cmd", blocking, "--name", "blocking")
    return _run(directory, "run", *targets, "--only", "CH-CONC-*", exit_code=1)


CHECKS = """
from suite.api import requirement, informational, HarnessError

@requirement("CH-CMD-2")
def test_ping_passes(target):
    with target.connect() as c:
        c.send(b"PING\\r\\n")
        c.expect_line(b"+PONG\\r\\n")

@requirement("CH-CMD-3")
def test_echo_expectation_is_wrong_on_purpose(target):
    with target.connect() as c:
        c.send(b"ECHO abc\\r\\n")
        c.expect_line(b"$abd\\r\\n")

@requirement("CH-TIMEOUT-2")
def test_a_should_that_fails(target):
    with target.connect() as c:
        c.send(b"PING\\r\\n")
        c.expect_line(b"+PANG\\r\\n")

@requirement("CH-CMD-6")
def test_the_harness_breaks(target):
    raise HarnessError("the suite could not do its part")

@requirement("CH-URGENT-3")
def test_needs_the_urgent_feature(target):
    pass

@informational
@requirement("CH-CONC-1")
def test_measures(target, measure):
    measure("observed concurrency", 32, "requests")
"""


@pytest.fixture(scope="module")
def every_verdict(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One check per verdict, run by the plugin (pytest) against the evented server."""
    directory = tmp_path_factory.mktemp("verdicts")
    (directory / "test_checks.py").write_text(CHECKS, encoding="utf-8")
    result = run_python(
        *("-m", "pytest", "-p", "no:cacheprovider", "-q", "test_checks.py", "--reference", "evented"),
        *("--declare", "features=framed,tls,starttls", "--seed", "1"),
        *("--json", str(directory / "report.json"), "--html", str(directory / "html")),
        cwd=directory,
    )
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]  # the ERROR: the suite could not judge
    return _read(directory)


MARKUP = "<script>alert(1)</script><img src=x onerror=\"alert('&amp;')\">"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A server that answers ECHO with HTML (tests/servers/replies_with_markup.py)."""
    server = f"{REPO / '.venv/bin/python'} {REPO / 'tests/servers/replies_with_markup.py'} --port {{port}}"
    directory = tmp_path_factory.mktemp("hostile")
    return _run(directory, "run", "--cmd", server, "--name", "markup", "--only", "CH-CMD-3", exit_code=1)


# ---- the index -------------------------------------------------------------------------------


def _matrix_rows(index: Node) -> list[Node]:
    return index.find("table", "matrix").find("tbody").find_all("tr")


def test_the_index_shows_every_target_against_every_area_it_was_checked_in(
    concurrency: Run, every_verdict: Run
) -> None:
    index = concurrency.page("index.html")
    header = [th.text() for th in index.find("table", "matrix").find("thead").find_all("th")]
    assert header == ["target", "level", "time", "CONC"]
    names = [row.find("td", "target").find("b").text() for row in _matrix_rows(index)]
    assert names == ["evented", "blocking"]
    # the areas in the spec's order, not the order the checks ran in
    header = [th.text() for th in every_verdict.page("index.html").find("thead").find_all("th", "area")]
    assert header == ["CMD", "TIMEOUT", "CONC", "URGENT"]


def test_each_cell_takes_the_colour_of_its_worst_verdict_and_links_to_its_area(every_verdict: Run) -> None:
    (row,) = _matrix_rows(every_verdict.page("index.html"))
    cells = row.find_all("td", "cell")
    assert [sorted(c.classes - {"cell"}) for c in cells] == [
        ["v-ERROR"],
        ["v-NON-STRICT"],
        ["v-INFO"],
        ["v-UNSUPPORTED"],
    ]
    assert " ".join(cells[0].text().split()) == "1 ✓ 1 ✕ 1 !"  # PASS, FAIL and ERROR in CMD: the worst gives the colour
    target = every_verdict.page("target-evented.html")
    for cell, area in zip(cells, ["CMD", "TIMEOUT", "CONC", "URGENT"], strict=True):
        assert cell.find("a").attrs["href"] == f"target-evented.html#area-{area}"
        assert target.find_all("section", id=f"area-{area}")


def test_every_link_leads_to_a_page_written_and_nothing_is_fetched(concurrency: Run, every_verdict: Run) -> None:
    for run in (concurrency, every_verdict):
        pages = {path.name: run.page(path.name) for path in run.html.glob("*.html")}
        for name, page in pages.items():
            ids = {node.attrs["id"] for node in page.walk() if "id" in node.attrs}
            assert not page.find_all("script") and not page.find_all("link") and not page.find_all("img"), name
            assert not page.find_all("iframe") and not page.find_all("object"), name
            for node in page.walk():
                for attribute in ("href", "src"):
                    if attribute not in node.attrs:
                        continue
                    link = urlsplit(node.attrs[attribute])
                    assert not link.scheme and not link.netloc, f"{name}: {node.attrs[attribute]}"
                    target_ids = (
                        ids if not link.path else {n.attrs["id"] for n in pages[link.path].walk() if "id" in n.attrs}
                    )
                    assert not link.fragment or link.fragment in target_ids, f"{name}: {node.attrs[attribute]}"
                fill = re.fullmatch(r"url\(#(.+)\)", node.attrs.get("fill", ""))
                assert fill is None or fill.group(1) in ids, f"{name}: fill {node.attrs['fill']}"


def test_a_partial_run_says_so_on_every_page_and_claims_no_level(concurrency: Run) -> None:
    for path in concurrency.html.glob("*.html"):
        banner = concurrency.page(path.name).find("p", "banner")
        assert banner.text() == "Partial run: only CH-CONC-* was checked. No level is claimed.", path.name
    levels = [row.find("span", "level").text() for row in _matrix_rows(concurrency.page("index.html"))]
    assert levels == ["no level", "no level"]


def test_interrupted_stopped_and_shard_runs_say_so_and_claim_no_level(concurrency: Run, tmp_path: Path) -> None:
    report = copy.deepcopy(concurrency.report)
    report.update(interrupted=True, stopped="-x: the first failing check", shard={"index": 2, "count": 3})
    render_html(report, tmp_path)
    for name in ("index.html", "target-blocking.html", "case-blocking-CH-CONC-1.html"):
        banners = {tuple(sorted(b.classes)): b.text() for b in read_page(tmp_path / name).find_all("p", "banner")}
        assert set(banners) == {("banner", kind) for kind in ("interrupted", "partial", "shard", "stopped")}
        assert all("No level is claimed" in text for text in banners.values())
        assert "-x: the first failing check" in banners[("banner", "stopped")]
        assert "Shard 2 of 3" in banners[("banner", "shard")]


def test_the_index_shows_the_matrix_of_architectures_and_images_with_their_versions(
    concurrency: Run, tmp_path: Path
) -> None:
    """As ``sockspec matrix`` writes it (its images take minutes to build, so
    the matrix key is added to a real report here, and checked against the schema)."""
    report = copy.deepcopy(concurrency.report)
    versions = {"bookworm": ("3.11.2", "OpenSSL 3.0.15 3 Sep 2024"), "trixie": ("3.13.5", "OpenSSL 3.5.1 1 Jul 2025")}
    for target, image in zip(report["targets"], versions, strict=True):
        target.update(name=f"evented@{image}", arch="evented", image=image)
    report["matrix"] = {
        "archs": ["evented"],
        "images": list(versions),
        "cells": [
            {
                "arch": "evented", "kind": "server", "image": t["image"], "target": t["name"],
                "conformance": None, "passes_every_must": t["counts"]["FAIL"] == 0, "counts": t["counts"],
                "image_name": f"sockspec-evented:{t['image']}",
                "python": versions[t["image"]][0], "openssl": versions[t["image"]][1],
            }
            for t in report["targets"]
        ],
    }  # fmt: skip
    validate_report(report)
    render_html(report, tmp_path)
    table = read_page(tmp_path / "index.html").find("table", "images")
    heads = [th.words() for th in table.find("thead").find_all("th", "area")]
    assert heads == [
        "bookworm sockspec-evented:bookworm Python 3.11.2 · OpenSSL 3.0.15 3 Sep 2024",
        "trixie sockspec-evented:trixie Python 3.13.5 · OpenSSL 3.5.1 1 Jul 2025",
    ]
    (row,) = table.find("tbody").find_all("tr")
    cells = row.find_all("td", "cell")
    assert [c.find("a").attrs["href"] for c in cells] == ["target-evented-bookworm.html", "target-evented-trixie.html"]
    assert [sorted(c.classes) for c in cells] == [["cell", "v-PASS"], ["cell", "v-FAIL"]]
    assert (tmp_path / "target-evented-bookworm.html").is_file()


# ---- target and case pages -------------------------------------------------------------------


def test_a_failing_case_page_shows_its_id_the_spec_expected_against_actual_the_transcript_and_the_rerun(
    every_verdict: Run,
) -> None:
    result = every_verdict.result("evented", "CH-CMD-3")
    (check,) = result["checks"]
    failure = check["failure"]
    page = every_verdict.page("case-evented-CH-CMD-3.html")
    assert page.find("h1").text().startswith("CH-CMD-3 (MUST) — ECHO returns the rest of the payload verbatim")
    spoken = " ".join(page.find("div", "spec").text().split())
    assert spoken == " ".join(requirements.get("CH-CMD-3").text.replace("`", "").split())
    diff = page.find("div", "diff")
    expected, actual, caret = diff.find_all("pre")
    assert (expected.text(), actual.text()) == ("$abd\\r\\n", "$abc\\r\\n") == (failure["expected"], failure["actual"])
    assert caret.text() == "   ^" and actual.find("mark").text() == "c"  # under the first unexpected byte
    rows = page.find("table", "transcript").find_all("tr")
    shown = [(r.find("td", "dir").text(), r.find("td", "bytes").text()) for r in rows]
    (transcript,) = failure["transcripts"]
    assert shown == [(e["direction"], e["text"]) for e in transcript["events"]]
    assert ("TX", "ECHO abc\\r\\n") in shown and ("RX", "$abc\\r\\n") in shown
    assert page.find("pre", "rerun").text() == check["rerun"]
    assert "--only CH-CMD-3" in check["rerun"] and page.find_all("code") and "Seed" in page.text()
    row = every_verdict.page("target-evented.html").find("tr", id="CH-CMD-3")
    assert row.find("td", "id").find("a").attrs["href"] == "case-evented-CH-CMD-3.html"


def test_only_what_did_not_pass_gets_a_case_page_and_an_error_shows_its_explanation(every_verdict: Run) -> None:
    cases = sorted(path.name for path in every_verdict.html.glob("case-*.html"))
    assert cases == ["case-evented-CH-CMD-3.html", "case-evented-CH-CMD-6.html", "case-evented-CH-TIMEOUT-2.html"]
    (check,) = every_verdict.result("evented", "CH-CMD-6")["checks"]
    assert check["verdict"] == "ERROR" and check["failure"] is None
    section = every_verdict.page("case-evented-CH-CMD-6.html").find("section", "check")
    assert section.find("span", "badge").text() == "! ERROR"
    assert section.find("pre").text() == check["explanation"]
    assert "the suite could not do its part" in check["explanation"]
    listed = every_verdict.page("index.html").find("table", "results").find("tbody").find_all("tr")
    assert [(row.find("span", "badge").text(), row.find("td", "id").find("a").attrs["href"]) for row in listed] == [
        ("✕ FAIL", "case-evented-CH-CMD-3.html"),
        ("! ERROR", "case-evented-CH-CMD-6.html"),
        ("~ NON-STRICT", "case-evented-CH-TIMEOUT-2.html"),
    ]
    target = every_verdict.page("target-evented.html")
    assert target.find("tr", id="CH-CONC-1").find("ul", "measurements").text() == "observed concurrency: 32 requests"
    assert not target.find("tr", id="CH-CMD-2").find("td", "id").find_all("a")  # a PASS has no case page


def test_a_long_transcript_notes_the_records_left_out_where_they_were(every_verdict: Run, tmp_path: Path) -> None:
    """The JSON keeps a long transcript's head and tail (suite/report/explain.py):
    the page says how many records were left out, between the two."""
    report = copy.deepcopy(every_verdict.report)
    (check,) = next(r for r in report["targets"][0]["results"] if r["id"] == "CH-CMD-3")["checks"]
    (transcript,) = check["failure"]["transcripts"]
    transcript["events"] = [
        {"at": n / 1000, "direction": "TX", "text": f"ECHO {n}\\r\\n", "size": len(f"ECHO {n}\r\n"), "base64": ""}
        for n in (*range(200), *range(250, 450))
    ]
    transcript["omitted"] = 50
    validate_report(report)
    render_html(report, tmp_path)
    rows = read_page(tmp_path / "case-evented-CH-CMD-3.html").find("table", "transcript").find_all("tr")
    assert len(rows) == 401
    assert [rows[199].find("td", "bytes").text(), rows[200].text(), rows[201].find("td", "bytes").text()] == [
        "ECHO 199\\r\\n",
        "… 50 records omitted …",
        "ECHO 250\\r\\n",
    ]


def test_hostile_bytes_from_the_target_are_shown_as_text_never_as_markup(hostile: Run) -> None:
    pages = sorted(path.name for path in hostile.html.glob("*.html"))
    assert pages == ["case-markup-CH-CMD-3.html", "grades.html", "index.html", "target-markup.html"]
    for name in pages:
        page = hostile.page(name)
        assert not page.find_all("script") and not page.find_all("img")
        assert not any(name.startswith("on") for node in page.walk() for name in node.attrs)
    case = hostile.page("case-markup-CH-CMD-3.html")
    replies = [row.find("td", "bytes").text() for row in case.find("table", "transcript").find_all("tr", "d-RX")]
    assert replies == [MARKUP + "\\r\\n"]
    diff = case.find("div", "diff")
    assert diff.find_all("pre")[1].text() == MARKUP + "\\r\\n"
    assert diff.find("mark").text() == "<" and diff.find("pre", "caret").text() == "^"
    raw = (hostile.html / "case-markup-CH-CMD-3.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw and "<script>" not in raw


def _svg(page: Node) -> list[Node]:
    return page.find_all("svg", "timeline")


def _bars(svg: Node) -> list[tuple[float, float, bool]]:
    """Each bar's left and right edge, and whether it is open (no reply)."""
    return [
        (float(r.attrs["x"]), float(r.attrs["x"]) + float(r.attrs["width"]), "bar-open" in r.classes)
        for r in svg.find_all("rect", "bar")
    ]


def test_the_concurrency_picture_draws_one_row_per_connection_and_open_bars_for_missing_replies(
    concurrency: Run,
) -> None:
    (check,) = concurrency.result("blocking", "CH-CONC-1")["checks"]
    (timeline,) = check["timelines"]
    missing = sum(1 for row in timeline["rows"] for bar in row["bars"] if bar["end"] is None)
    assert 0 < missing < len(timeline["rows"]), "the mutant answers a few SLEEPs, one after the other, in time"
    for page in ("case-blocking-CH-CONC-1.html", "target-blocking.html"):
        svg = _svg(concurrency.page(page))[0]
        rows = svg.find_all("g", "row")
        assert [r.find("text", "label").text() for r in rows] == [row["label"] for row in timeline["rows"]]
        bars = _bars(svg)
        assert sum(1 for _, _, open_bar in bars if open_bar) == missing
        right_edge = float(svg.find("line", "axis").attrs["x2"])
        assert all(end == pytest.approx(right_edge) for _, end, open_bar in bars if open_bar)
        bound = float(svg.find("line", "bound").attrs["x1"])
        assert float(svg.find("line", "axis").attrs["x1"]) < bound < right_edge


def test_a_blocked_reactor_draws_a_staircase_where_the_evented_server_answers_at_once(concurrency: Run) -> None:
    width = timeline_geometry({"title": "", "note": "", "bound": None, "rows": []})["plot_right"]
    evented = _bars(_svg(concurrency.page("target-evented.html"))[0])
    assert not any(open_bar for _, _, open_bar in evented)
    ends = sorted(end for _, end, _ in evented)
    assert ends[-1] - ends[0] < 0.03 * width, "every reply of the evented server comes at about T"
    blocking = _bars(_svg(concurrency.page("target-blocking.html"))[0])
    steps = sorted(end for _, end, open_bar in blocking if not open_bar)
    assert len(steps) >= 2
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert min(gaps) > 0.1 * width, f"one SLEEP after the other: a staircase, got right edges {steps}"


def test_rendering_the_same_report_twice_gives_the_same_files(concurrency: Run, tmp_path: Path) -> None:
    first = render_html(concurrency.report, tmp_path / "first")
    second = render_html(concurrency.report, tmp_path / "second")
    assert [p.name for p in first] == [p.name for p in second]
    assert first[0].name == "index.html"
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.read_bytes() == (concurrency.html / a.name).read_bytes(), f"--html wrote another {a.name}"
    assert sorted(p.name for p in concurrency.html.iterdir()) == sorted(p.name for p in first)


def test_seven_targets_render_in_well_under_two_seconds(concurrency: Run, tmp_path: Path) -> None:
    report = copy.deepcopy(concurrency.report)
    report["targets"] = [{**copy.deepcopy(t), "name": f"{t['name']}-{n}"} for n in range(4) for t in report["targets"]][
        :7
    ]
    started = time.perf_counter()
    written = render_html(report, tmp_path)
    elapsed = time.perf_counter() - started
    assert len([p for p in written if p.name.startswith("target-")]) == 7
    assert elapsed < 2.0, f"{elapsed:.2f} s for 7 targets"


def test_a_report_of_another_schema_is_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"schema 2 JSON report, not 1$"):
        render_html({"schema": 1, "targets": []}, tmp_path)
    assert not list(tmp_path.iterdir())


# ---- the pieces ------------------------------------------------------------------------------


def test_slugs_are_safe_file_names_and_unique_even_where_case_is_ignored() -> None:
    names = ["evented@bookworm", "a/b", "../..", "Evented@Bookworm", "evented-bookworm", "", "ü"]
    chosen = slugs(names)
    assert chosen == {
        "evented@bookworm": "evented-bookworm",
        "a/b": "a-b",
        "../..": "target",
        "Evented@Bookworm": "evented-bookworm-2",
        "evented-bookworm": "evented-bookworm-3",
        "": "target-2",
        "ü": "target-3",
    }
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", slug) for slug in chosen.values())


def test_the_specs_text_keeps_its_paragraphs_code_fences_and_tables() -> None:
    blocks = spec_blocks(requirements.get("CH-CMD-13").text)
    assert [b["kind"] for b in blocks] == ["paragraph", "pre", "table", "paragraph"]
    assert blocks[0]["spans"][0] == ("code", "INFO")
    assert blocks[1]["text"].startswith("info-value  = pair *( SP pair )")
    assert blocks[2]["head"] == [[("text", "Key")], [("text", "Value")]]
    assert blocks[2]["rows"][0] == [[("code", "proto")], [("code", "cloudhash/1")]]


def test_the_timeline_geometry_scales_bars_bound_and_ticks_to_one_clock() -> None:
    timeline = {
        "title": "two connections",
        "note": "",
        "bound": 0.95,
        "rows": [
            {"label": "connection 1", "bars": [{"start": 0.0, "end": 0.5, "outcome": "+OK\\r\\n"}]},
            {"label": "connection 2", "bars": [{"start": 0.1, "end": None, "outcome": "no reply"}]},
        ],
    }
    g = timeline_geometry(timeline, 600)
    left, right = g["plot_left"], g["plot_right"]
    closed, open_bar = g["rows"][0]["bars"][0], g["rows"][1]["bars"][0]
    assert closed["x"] == left and not closed["open"] and closed["kind"] == "answered"
    assert open_bar["open"] and open_bar["x"] + open_bar["width"] == right
    per_second = (right - left) / (0.95 * 1.08)  # the latest instant, the bound, with room after it
    assert closed["width"] == pytest.approx(0.5 * per_second, abs=0.01)
    assert g["bound_x"] == pytest.approx(left + 0.95 * per_second, abs=0.01)
    assert g["rows"][1]["y"] - g["rows"][0]["y"] > closed["height"]
    labels = [t["label"] for t in g["ticks"]]
    assert labels == ["0 ms", "200 ms", "400 ms", "600 ms", "800 ms", "1000 ms"]
    assert all(left <= t["x"] <= right for t in g["ticks"])
    assert g["kinds"] == ["answered", "open"]


def test_the_modules_examples_hold() -> None:
    assert doctest.testmod(suite.report.html).failed == 0
