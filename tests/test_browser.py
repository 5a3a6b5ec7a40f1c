"""The HTML report in a real browser: headless Chromium opens the pages of a
real run (the evented reference server beside a mutant whose SLEEP blocks its
reactor), from ``file://`` as a CI artefact is opened.

Each Chromium runs with a fresh profile, no network services of its own, a
deadline, and its process group killed when it is done. What it shows is
checked through ``--dump-dom`` (the page after the browser built it) and its
console through ``--enable-logging=stderr``: the pages have no script, so any
console line at all (an uncaught error, a message) fails the test.

Screenshots are kept as artefacts in ``$SOCKSPEC_ARTEFACTS/browser/`` (default
``tests/artefacts/browser/``, which git ignores); CI can upload that directory.

Without Chromium (Debian's ``chromium`` package) the tests skip, except in
CI (``CI=true``), where they fail: CI installs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.html_support import REPO, Node, mutant_template, parse, run_sockspec

ARTEFACTS = Path(os.environ.get("SOCKSPEC_ARTEFACTS") or REPO / "tests" / "artefacts") / "browser"
# A console message in Chromium's log: [pid:tid:time:INFO:CONSOLE:12] "message", source: file:///... (12)
CONSOLE = re.compile(r":CONSOLE[(:]\d*\)?\] (?P<message>.*)")
DEADLINE = 60.0  # one page load, with a cold start of the browser on a busy CI machine


def chromium_or_skip() -> str:
    """Chromium's path; without it the test skips, but in CI (CI=true) it
    fails, so that CI can never go green without looking at the pages."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed (bash scripts/browser-up.sh installs it)")
        pytest.skip("chromium is not installed (bash scripts/browser-up.sh installs it)")
    return path


@dataclass
class Visit:
    stdout: str
    console: list[str]  # what the page logged to the console


def visit(page: Path, *flags: str) -> Visit:
    """Open PAGE in headless Chromium with FLAGS (--dump-dom, --screenshot=...)."""
    with tempfile.TemporaryDirectory(prefix="sockspec-chromium-") as profile:
        argv = [
            chromium_or_skip(),
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            *(f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"),
            *flags,
            page.as_uri(),
        ]
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = process.communicate(timeout=DEADLINE)
        finally:
            # the browser's helpers (renderer, GPU, zygote) are in its group: none outlives the visit
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.communicate()
    assert process.returncode == 0, f"chromium exited with {process.returncode}:\n{err[-3000:]}"
    return Visit(out, [m.group("message") for m in map(CONSOLE.search, err.splitlines()) if m])


def screenshot(page: Path, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    path.unlink(missing_ok=True)
    shown = visit(page, f"--screenshot={path}", "--window-size=1280,1600")
    assert not shown.console, f"{page.name} logged to the console: {shown.console}"
    print(f"screenshot: {path}")
    return path


def png_facts(path: Path) -> tuple[int, int, int]:
    """Width, height, and how many different byte values the pixels hold
    (a blank page has a handful; a page with text and colours, hundreds)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] == b"IDAT":
            chunks.append(data[at + 8 : at + 8 + length])
        at += 12 + length
    return width, height, len(set(zlib.decompress(b"".join(chunks))))


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chromium_or_skip()
    directory = tmp_path_factory.mktemp("browser") / "html"
    blocking = mutant_template("sleep-blocks-reactor", "evented")
    result = run_sockspec(
        *("run", "--reference", "evented", "--cmd", blocking, "--name", "blocking"),
        *("--only", "CH-CONC-*", "--seed", "1", "--html", str(directory)),
    )
    assert result.returncode == 1, (result.stdout + result.stderr)[-3000:]
    return directory


def dom(page: Path) -> Node:
    shown = visit(page, "--dump-dom")
    assert not shown.console, f"{page.name} logged to the console: {shown.console}"
    return parse(shown.stdout).root


def test_the_index_shows_both_targets_and_their_concurrency_cells(pages: Path) -> None:
    index = dom(pages / "index.html")
    rows = index.find("table", "matrix").find("tbody").find_all("tr")
    assert [row.find("td", "target").find("b").text() for row in rows] == ["evented", "blocking"]
    assert [sorted(row.find("td", "cell").classes) for row in rows] == [["cell", "v-PASS"], ["cell", "v-FAIL"]]
    width, height, shades = png_facts(screenshot(pages / "index.html", "index.png"))
    assert (width, height) == (1280, 1600) and shades > 100


def test_a_case_page_shows_the_failing_id_its_transcript_and_its_picture(pages: Path) -> None:
    case = dom(pages / "case-blocking-CH-CONC-1.html")
    assert case.find("h1").text().startswith("CH-CONC-1 (MUST)")
    sent = [row.find("td", "bytes").text() for row in case.find("table", "transcript").find_all("tr", "d-TX")]
    assert "SLEEP 500\\r\\n" in sent
    svg = case.find("svg", "timeline")
    assert len(svg.find_all("g", "row")) == 32 and svg.find_all("rect", "bar-open")
    width, height, shades = png_facts(screenshot(pages / "case-blocking-CH-CONC-1.html", "case.png"))
    assert (width, height) == (1280, 1600) and shades > 100


def test_the_target_page_draws_its_concurrency_pictures(pages: Path) -> None:
    target = dom(pages / "target-evented.html")
    pictures = target.find_all("svg", "timeline")
    assert len(pictures) >= 2, "CH-CONC-1 and CH-CONC-2 record who waited for whom"
    assert all(svg.find_all("rect", "bar") for svg in pictures)
    screenshot(pages / "target-evented.html", "target.png")


def test_the_console_check_catches_a_script_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><title>t</title><p>text</p><script>undefinedFunction();</script>")
    assert any("Uncaught ReferenceError" in line for line in visit(broken, "--dump-dom").console)
    clean = tmp_path / "clean.html"
    clean.write_text("<!DOCTYPE html><title>t</title><p>text</p>")
    assert visit(clean, "--dump-dom").console == []
