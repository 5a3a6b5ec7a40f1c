"""``--area-by-area``: the checks run in the spec's order of areas (FRAME,
CMD, ERR, ...), and the run stops once an area has completed with a failure,
the way a student works through the spec. The reports then say the run
stopped early and give no level."""

from __future__ import annotations

from typing import Any

import pytest

from .report.progress import AreaTracker, ends_check


class AreaByArea:
    """Registered on the controller (never on an xdist worker) when the option is given."""

    def __init__(self, targets: list[str]) -> None:
        self.tracker = AreaTracker(targets)
        self.stopped = ""  # why the run stopped, once it has

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.tracker.expect(item.nodeid for item in session.items)

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.tracker.expect(ids)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not ends_check(report) or self.stopped:
            return
        area = self.tracker.record(report.nodeid, bool(report.failed))
        if area is not None:
            self.stopped = f"--area-by-area: {area} has a failure; the areas after it were not checked"
            self._stop(report)

    def _stop(self, report: pytest.TestReport) -> None:
        session = self.session
        if session is not None:
            session.shouldstop = self.stopped
        # Under xdist the controller's loop watches its own flag.
        dsession = self.config.pluginmanager.getplugin("dsession") if self.config is not None else None
        if dsession is not None:
            dsession.shouldstop = self.stopped

    session: pytest.Session | None = None
    config: pytest.Config | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        self.config = session.config
