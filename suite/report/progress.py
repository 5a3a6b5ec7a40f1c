"""What a user sees while ``sockspec run`` runs: per area of the spec, the
checks done out of all, the failures so far, the time spent, and the check
running now.

On a terminal this is a live table, redrawn a few times a second, instead of
pytest's dots. When standard output is not a terminal (a CI log, a pipe),
each area gets one plain line when it completes::

    FRAME     42/42 checks  2 failed  6.1 s

The counting (``AreaTracker``) is apart from the display, so that the plugin
can also use it to stop after the first area with a failure
(``--area-by-area``). Both work on the xdist controller: the workers'
reports arrive there as the same hooks.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

import pytest
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .roots import area_of, area_rank

__all__ = ["AreaCount", "AreaTracker", "Progress", "ends_check"]

REFRESHES_PER_SECOND = 4


def ends_check(report: pytest.TestReport) -> bool:
    """Whether this report is the one that finishes a check: its call, or a
    setup that did not pass (a skip for an undeclared feature, or an error).
    A teardown never does: the check was already judged."""
    return report.when == "call" or (report.when == "setup" and not report.passed)


@dataclass
class AreaCount:
    area: str
    target: str  # "" when the run has one target
    total: int = 0
    done: int = 0
    failed: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else now) - self.started

    def line(self, now: float) -> str:
        """``FRAME     42/42 checks  2 failed  6.1 s``"""
        target = f"{self.target:<15} " if self.target else ""  # a long name still gets its space
        text = (
            f"{self.area:<9} {target}{self.done}/{self.total} checks  {self.failed} failed  {self.elapsed(now):.1f} s"
        )
        return text if self.complete else text + "  (incomplete)"


class AreaTracker:
    """Counts checks per area (and per target, when there are several).

    ``expect`` takes the collected node IDs once; ``record`` takes each finished
    check and returns the area when that completes the area with a failure,
    which is when a run that goes area by area stops."""

    def __init__(self, targets: Sequence[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        # Longest first, so that a target named "cmd1" never claims "cmd10"'s checks.
        self.targets = sorted(targets, key=len, reverse=True) if len(targets) > 1 else []
        self.clock = clock
        self.counts: dict[tuple[str, str], AreaCount] = {}
        self.finished: set[str] = set()
        self.running: dict[str, float] = {}  # node ID -> when it started

    @property
    def expected(self) -> bool:
        return bool(self.counts)

    def expect(self, nodeids: Iterable[str]) -> None:
        """The checks of the run. Only the first list counts: under xdist every
        worker reports the same collection."""
        if self.counts:
            return
        for nodeid in nodeids:
            self._count_of(nodeid).total += 1

    def start(self, nodeid: str) -> None:
        now = self.clock()
        self.running[nodeid] = now
        count = self._count_of(nodeid)
        if count.started is None:
            count.started = now

    def record(self, nodeid: str, failed: bool) -> str | None:
        """One check finished. Returns its area when this was the area's last
        check (over every target) and one of the area's checks failed."""
        self.running.pop(nodeid, None)
        if nodeid in self.finished:
            return None
        self.finished.add(nodeid)
        count = self._count_of(nodeid)
        count.done += 1
        count.total = max(count.total, count.done)  # a check nobody announced still counts
        count.failed += int(failed)
        if count.started is None:
            count.started = self.clock()
        if count.complete:
            count.finished = self.clock()
        area = [c for c in self.counts.values() if c.area == count.area]
        if all(c.complete for c in area) and any(c.failed for c in area):
            return count.area
        return None

    def ordered(self) -> list[AreaCount]:
        """The areas in the spec's order, each target's in the order given."""
        return sorted(self.counts.values(), key=lambda c: (area_rank(c.area), c.area, c.target))

    def current(self) -> str | None:
        """The check that started last among those running now."""
        if not self.running:
            return None
        return max(self.running, key=lambda nodeid: self.running[nodeid])

    def _count_of(self, nodeid: str) -> AreaCount:
        key = (area_of(nodeid), self._target_of(nodeid))
        if key not in self.counts:
            self.counts[key] = AreaCount(*key)
        return self.counts[key]

    def _target_of(self, nodeid: str) -> str:
        """The target a check runs against, read from its parameters: the
        brackets hold the parameter IDs joined by "-"."""
        params = nodeid.rpartition("[")[2].rstrip("]") if nodeid.endswith("]") else ""
        for name in self.targets:
            if params == name or params.startswith(name + "-") or params.endswith("-" + name) or f"-{name}-" in params:
                return name
        return ""


def short(nodeid: str) -> str:
    """``suite/checks/test_frame.py::test_bare_lf[evented]`` -> ``test_frame.py::test_bare_lf[evented]``."""
    path, sep, rest = nodeid.partition("::")
    return path.rpartition("/")[2] + sep + rest


class Progress:
    """The pytest plugin object for the display, for a ``sockspec run`` only:
    pass ``Progress()`` to ``pytest.main(plugins=...)``, or register it from
    another plugin's ``pytest_configure``. It stays inert on xdist workers.

    ``targets`` (the target names) splits each area's line per target when
    there are several; ``live`` chooses the redrawn table (default: when
    standard output is a terminal and pytest is not verbose)."""

    def __init__(
        self,
        config: pytest.Config | None = None,
        targets: Sequence[str] = (),
        live: bool | None = None,
        tracker: AreaTracker | None = None,
    ) -> None:
        self.config: pytest.Config | None = None
        self.tracker = tracker or AreaTracker(targets)
        self.live_asked = live
        self.began = self.tracker.clock()
        self.printed: set[tuple[str, str]] = set()
        self.wants_live = False
        self.live: Live | None = None
        self._stream: IO[str] | None = None
        if config is not None:
            self.pytest_configure(config)

    # ---- the hooks -----------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        if self.config is not None or hasattr(config, "workerinput"):
            return
        self.config = config
        live = self.live_asked
        if live is None:
            live = _is_terminal(sys.stdout) and config.getoption("verbose") <= 0
        self.wants_live = live
        if live:
            # The live table redraws from its own thread, also while a check runs
            # in this process with its output captured (fd 1 pointing elsewhere),
            # so it writes to its own copy of the terminal's descriptor, taken
            # now, while nothing is captured.
            self._stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", errors="replace")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # xdist's status line, off a terminal in a quiet run, only ever reads
        # "bringing up nodes..." (printed twice); this display says more, once.
        xdist_status = session.config.pluginmanager.get_plugin("terminaldistreporter")
        if self.config is not None and session.config.getoption("verbose") < 0 and xdist_status is not None:
            xdist_status.ensure_show_status = lambda: None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._expect(item.nodeid for item in session.items)

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._expect(ids)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if self.config is not None:
            self.tracker.start(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.config is None or not ends_check(report):
            return
        self.tracker.record(report.nodeid, bool(report.failed))
        if not self.wants_live:
            self._print_completed()

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        """Keeps pytest's counts but not its dots: the areas say it better."""
        status = yield
        if self.config is None or config.getoption("verbose") > 0:
            return status
        if isinstance(status, tuple) and len(status) == 3:
            category, _, word = status
            return category, "", word
        return status

    def pytest_keyboard_interrupt(self) -> None:
        self.stop()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        self.stop()

    def pytest_unconfigure(self) -> None:
        self.stop()

    # ---- the display ---------------------------------------------------------

    def stop(self) -> None:
        """Ends the live table (leaving its last state on the screen), or
        prints the areas that never completed; safe to call more than once."""
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()  # draws the last state once more
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()
        if self.wants_live:
            return
        now = self.tracker.clock()
        for count in self.tracker.ordered():
            key = (count.area, count.target)
            if key not in self.printed and count.done:
                self.printed.add(key)
                self._write(count.line(now))

    def table(self) -> Table:
        now = self.tracker.clock()
        counts = self.tracker.ordered()
        done = sum(c.done for c in counts)
        total = sum(c.total for c in counts)
        table = Table(title=f"sockspec: {done}/{total} checks, {now - self.began:.0f} s", title_justify="left")
        table.add_column("area", no_wrap=True)
        if any(c.target for c in counts):
            table.add_column("target", no_wrap=True)
        table.add_column("checks", justify="right", no_wrap=True)
        table.add_column("failed", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        for count in counts:
            failed = Text(str(count.failed), style="bold red" if count.failed else "green")
            row: list[Any] = [count.area, *([count.target] if count.target else [])]
            if any(c.target for c in counts) and not count.target:
                row.append("")
            row += [f"{count.done}/{count.total}", failed, f"{count.elapsed(now):.1f} s"]
            table.add_row(*row)
        current = self.tracker.current()
        table.caption = f"now: {short(current)}" if current else None
        table.caption_justify = "left"
        return table

    def _expect(self, nodeids: Iterable[str]) -> None:
        if self.config is None:
            return
        self.tracker.expect(nodeids)
        if self._stream is not None and self.live is None and self.tracker.expected:
            self._start_live(self._stream)

    def _start_live(self, stream: IO[str]) -> None:
        console = Console(file=stream, force_terminal=True, width=min(_width(), 120))
        self.live = Live(
            console=console,
            get_renderable=self.table,
            refresh_per_second=REFRESHES_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def _print_completed(self) -> None:
        now = self.tracker.clock()
        for count in self.tracker.ordered():
            key = (count.area, count.target)
            if count.complete and count.done and key not in self.printed:
                self.printed.add(key)
                self._write(count.line(now))

    def _write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter") if self.config else None
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)
        else:
            print(line, flush=True)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and stream.fileno() >= 0
    except (AttributeError, ValueError, OSError):
        return False


def _width() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 120
