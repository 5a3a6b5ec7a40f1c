"""What `sockspec run` shows while it runs, instead of pytest's dots: the
live progress on a terminal, one line per finished area in a log."""

from __future__ import annotations

from typing import Any

import pytest


class RunDisplay:
    """Registered by `sockspec run` only: a plain pytest run keeps pytest's own output."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            category = "failed" if report.failed else "skipped" if report.skipped else "passed"
            return category, "", ""
        return None
