"""Gathers every check's outcome (on the xdist controller too, where the
workers' reports arrive) and turns them into the reports and the exit code.

One collector per pytest session, so nested runs (pytester) never mix their
results. An interrupted run still writes its reports, marked as such, and
never exits 0.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from .. import reaper
from ..docker.images import local_facts
from ..outcome import CheckOutcome
from . import files
from .results import EXIT_INTERRUPTED, RunFacts, TargetResult, aggregate, exit_code

USER_PROPERTY = "sockspec"
RESULTS = pytest.StashKey[list[TargetResult]]()


class ResultCollector:
    def __init__(self, config: pytest.Config, run: Callable[[], Any]) -> None:
        self.config = config
        self.run = run  # the plugin's state for this session: settings and Docker
        self.outcomes: list[CheckOutcome] = []
        self.broken_modules: list[str] = []
        self.interrupted = False  # by SIGINT or SIGTERM
        self.facts = RunFacts()  # what kind of run it was, once it has ended

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # A check module that cannot be imported judges nothing: never a pass.
        if report.failed:
            self.broken_modules.append(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == USER_PROPERTY:
                self.outcomes.append(CheckOutcome.from_json(json.loads(str(value))))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = self.config
        if hasattr(config, "workerinput"):
            return
        # Only a signal is an interrupt: pytest's own stops (-x, collection errors) raise KeyboardInterrupt too.
        self.interrupted = reaper.interrupted_by() is not None
        if not self.outcomes and not self.interrupted:
            return  # nothing was judged (a plain pytest run, or one that stopped before any check)
        state = self.run()
        settings = state.settings
        targets = self.targets(state)
        config.stash[RESULTS] = targets
        facts = self.facts = RunFacts(
            strict=settings.strict,
            seed=settings.seed,
            only=settings.only,
            interrupted=self.interrupted,
            stopped=self._stopped(session),
            allow_unchecked=settings.allow_unchecked,
            shard=settings.shard,
        )
        files.write_reports(
            targets,
            facts,
            json_path=config.getoption("sockspec_json"),
            junit_path=config.getoption("sockspec_junit"),
            html_dir=config.getoption("sockspec_html"),
        )
        if self.interrupted:
            session.exitstatus = EXIT_INTERRUPTED
        elif self.broken_modules:
            session.exitstatus = pytest.ExitCode.INTERRUPTED  # the suite's own fault: exit 2 from sockspec
        elif int(exitstatus) in (0, 1):  # leave pytest's own problems (usage, internal errors) alone
            session.exitstatus = exit_code(targets, facts)

    def _stopped(self, session: pytest.Session) -> str:
        """Why the run stopped before its end on its own (-x, --area-by-area), if it did."""
        by_area = self.config.pluginmanager.get_plugin("sockspec-area-by-area")
        if by_area is not None and by_area.stopped:
            return str(by_area.stopped)
        dsession = self.config.pluginmanager.get_plugin("dsession")
        reason = session.shouldfail or session.shouldstop or (dsession.shouldstop if dsession is not None else False)
        return str(reason) if reason and not self.interrupted else ""

    def targets(self, state: Any) -> list[TargetResult]:
        settings = state.settings
        docker = state.docker
        descriptions = {name: spec.describe() for name, spec in settings.specs.items()}
        descriptions.update({name: client.describe() for name, client in settings.clients.items()})
        targets = aggregate(self.outcomes, descriptions)
        for target in targets:
            target.rerun = _rerun(settings, target.name)
            target.declared = next((c.declared for c in self.outcomes if c.target == target.name and c.declared), {})
            spec = settings.specs.get(target.name)
            client = settings.clients.get(target.name)
            if client is not None:
                target.kind = "client"
                if client.image is not None and docker is not None:
                    target.environment = dict(docker.facts.get(f"client@{client.image}", {}))
                    target.arch, target.image = "reference-client", client.image
                elif client.name == "client-reference":
                    target.environment = local_facts()
            elif spec is not None and spec.image is not None and docker is not None:
                in_image = spec.template is not None  # a user's --cmd, run in the image
                target.environment = dict(docker.facts.get(spec.name if in_image else spec.image, {}))
                target.arch = spec.name.rpartition("@")[0] if in_image else spec.arch
                target.image = spec.image
            elif spec is not None and spec.reference:
                target.environment = local_facts()
        return targets


def _rerun(settings: Any, name: str) -> str:
    """`sockspec run` for this one target, with the run's seed and selection."""
    spec = settings.specs.get(name)
    client = settings.clients.get(name)
    if spec is not None:
        words = [f"--reference {name}" if spec.reference else spec.describe()]
        if (spec.template is not None or spec.address is not None) and not spec.reference:
            words.append(f"--name {shlex.quote(name)}")
    elif client is not None:
        words = [client.describe()]
    else:
        return ""
    words += [f"--declare {shlex.quote(f'{key}={value}')}" for key, value in settings.overrides.items()]
    if settings.only:
        words.append(f"--only {shlex.quote(','.join(settings.only))}")
    return f"sockspec run {' '.join(words)} --seed {settings.seed}"
