"""The pytest plugin (entry point ``sockspec``): options, the run's set-up,
collection, and one CheckOutcome per check.

Each job beside it has its own module: reading and checking options
(configuration), the first contact with each target (preflight), the
fixtures checks use (fixtures), verdicts (judge), Docker (docker.lifecycle),
stray process groups (reaper), results and reports (report.collect,
report.terminal). It is inert in any pytest run that names no target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import configuration as hypothesis_configuration
from hypothesis import settings as hypothesis_settings

from . import configuration, fixtures, overlap, preflight, reaper, requirements
from .area_by_area import AreaByArea
from .configuration import RunSettings, UsageProblem
from .docker import lifecycle
from .fixtures import CLIENT_FEATURES, MEASUREMENTS, TARGET_VIEWS, TIMELINES
from .judge import CheckEnding, judge
from .options import SHARED
from .outcome import CheckOutcome
from .report import terminal
from .report.collect import RESULTS, USER_PROPERTY, ResultCollector
from .report.explain import failures_text
from .report.roots import area_rank
from .run_state import STATE, RunState, ids_of, is_check, marked_ids, state_of, target_of
from .targets.base import Target
from .verdicts import Verdict

# ---- options and set-up ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sockspec", "sockspec: CloudHash/1 conformance")
    for option in SHARED:
        group.addoption(option.flag, **option.definition(for_plugin=True))
    group.addoption("--sockspec-strict", action="store_true", help="SHOULDs fail the run too (also: --strict)")
    # `sockspec run` has already started each target once, and explained any that did not answer.
    group.addoption("--sockspec-preflight-done", action="store_true", help=argparse.SUPPRESS)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): the PROTOCOL.md requirement(s) a check covers")
    config.addinivalue_line("markers", "informational: the check measures; its verdict is INFO")
    config.addinivalue_line("markers", overlap.MARKER)
    worker: dict[str, Any] | None = getattr(config, "workerinput", None)

    def get(name: str) -> Any:
        if name == "sockspec_strict":
            return config.getoption("sockspec_strict") or config.getoption("strict", False)
        return config.getoption(name)

    try:
        settings = configuration.read(get, worker_seed=worker["sockspec_seed"] if worker else None)
    except UsageProblem as problem:
        pytest.exit(f"sockspec: {problem}", returncode=2)  # pytest would say 4; the suite's contract is 2
    state = RunState(settings)
    config.stash[STATE] = state
    config.pluginmanager.register(ResultCollector(config, lambda: config.stash[STATE]), "sockspec-results")
    config.pluginmanager.register(fixtures, "sockspec-fixtures")
    if not settings.has_target:
        return
    previous_handlers = reaper.interrupts_unwind()
    if worker is None:
        # Put back after pytest's own last steps (cleanups run last-in, first-out, and this
        # configure runs first), which collect garbage and so may run finalizers that an
        # interrupt must not be lost in. A worker's process ends with its session.
        config.add_cleanup(lambda: reaper.restore_handlers(previous_handlers))
    if settings.overlap and not settings.area_by_area:  # area by area, each area ends before the next starts
        config.pluginmanager.register(overlap.SideBySide(settings.overlap), "sockspec-overlap")
    _no_files_left_behind(config, state)
    if worker is None:
        state.groups_dir = reaper.open_run()
        if settings.area_by_area:
            config.pluginmanager.register(AreaByArea([*settings.specs, *settings.clients]), "sockspec-area-by-area")
    in_images = [(s.name, s.image, s.dockerfile) for s in settings.specs.values() if s.image and s.template]
    if settings.image_bases or settings.client_bases or settings.dns or in_images:
        try:
            docker = lifecycle.set_up(
                user_targets=in_images,
                image_bases=settings.image_bases,
                client_bases=settings.client_bases,
                dns=settings.dns,
                worker=worker,
                log=lambda line: print(f"sockspec: {line}", flush=True),
            )
        except lifecycle.DockerSetUpFailed as error:
            pytest.exit(f"sockspec: {error}", returncode=2)
        state.docker, state.docker_reason = docker.environment, docker.reason
    if worker is None and settings.specs and not config.getoption("sockspec_preflight_done"):
        unanswered = preflight.check_targets(settings, state.docker)
        if unanswered is not None:
            pytest.exit(unanswered, returncode=2)


def pytest_sessionstart(session: pytest.Session) -> None:
    # After every plugin's configure, so that it comes before pytest's own hook, which reports
    # what it gets. pytest's last cleanup puts back the hook it found, after its final garbage
    # collections: until then an interrupt in a finalizer is sent again (reaper).
    state = session.config.stash.get(STATE, None)
    if state is not None and state.settings.has_target:
        reaper.interrupts_survive_finalizers()


def _no_files_left_behind(config: pytest.Config, state: RunState) -> None:
    """Hypothesis keeps examples and a constants cache in ./.hypothesis; a
    conformance run reproduces through --seed instead, and leaves the user's
    directory as it found it: Hypothesis gets a scratch directory of its own."""
    state.previous_hypothesis = (
        getattr(hypothesis_configuration, "__hypothesis_home_directory", None),
        getattr(hypothesis_settings, "_current_profile", "default"),
    )
    state.scratch = Path(tempfile.mkdtemp(prefix="sockspec-hypothesis-"))
    hypothesis_configuration.set_hypothesis_home_dir(str(state.scratch))
    hypothesis_settings.register_profile("sockspec", database=None)
    hypothesis_settings.load_profile("sockspec")
    if config.getoption("hypothesis_seed", None) is None and hasattr(config.option, "hypothesis_seed"):
        config.option.hypothesis_seed = state.settings.seed


def pytest_configure_node(node: Any) -> None:  # xdist: workers get the controller's seed, certificates and Docker
    state = node.config.stash[STATE]
    node.workerinput["sockspec_seed"] = state.settings.seed
    node.workerinput["sockspec_docker_reason"] = state.docker_reason
    if state.docker is not None:
        node.workerinput["sockspec_docker"] = state.docker.handover()


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    if state.docker is not None:
        state.docker.close()
    if state.groups_dir is not None:
        reaper.sweep(state.groups_dir)
    if state.previous_hypothesis is not None:
        home, profile = state.previous_hypothesis
        hypothesis_configuration.set_hypothesis_home_dir(home)
        hypothesis_settings.load_profile(profile)
    if state.scratch is not None:
        shutil.rmtree(state.scratch, ignore_errors=True)


# ---- collection ------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not metafunc.definition.get_closest_marker("requirement"):
        return
    settings = state_of(metafunc.config).settings
    for fixture, names in (("target_name", list(settings.specs)), ("client_name", list(settings.clients))):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, names, ids=names, scope="session")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # A check of another profile's requirements only (CloudHash/1's under --profile resp2) never runs.
    other_profile = [item for item in items if marked_ids(item) and not is_check(item)]
    if other_profile:
        config.hook.pytest_deselected(items=other_profile)
        items[:] = [item for item in items if item not in other_profile]
    checks = [item for item in items if is_check(item)]
    if not checks:
        return
    settings = state_of(config).settings
    for item in checks:
        for requirement_id in ids_of(item):
            try:
                requirements.get(requirement_id)
            except KeyError as error:
                pytest.exit(f"sockspec: {item.nodeid}: {error}", returncode=2)
    if not settings.has_target:
        pytest.exit(
            "sockspec: no target; use --reference ARCH|all, --cmd TEMPLATE, --address HOST:PORT"
            " or, for clients, --client-cmd TEMPLATE, --client-reference, --client-image IMAGE",
            returncode=2,
        )
    # A check meant for servers has nothing to run against in a clients-only run, and the reverse.
    keep = [item for item in items if not is_check(item) or target_of(item) is not None]
    if settings.only:
        keep = [
            item
            for item in keep
            if not is_check(item) or any(configuration.matches(i, settings.only) for i in ids_of(item))
        ]
        if not any(is_check(item) for item in keep):
            pytest.exit(f"sockspec: --only {','.join(settings.only)} selects no check for these targets", returncode=2)
    if settings.shard is not None:
        keep = shard_of(keep, *settings.shard)
    deselected = [item for item in items if item not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    # The spec's order of areas (pytest's own is the modules' names): FRAME first, as a
    # server is built, and so that --area-by-area can stop after the first area with a FAIL.
    keep.sort(key=lambda item: area_rank(requirements.get(ids_of(item)[0]).area) if is_check(item) else -1)
    if hasattr(config, "workerinput"):
        # xdist hands out checks in this order: the dearest first, so that the
        # long ones overlap the rest instead of making the run's tail.
        keep.sort(key=lambda item: -_weight(item) if is_check(item) else 0)
        if settings.overlap and not settings.area_by_area:
            keep = overlap.spread(keep)
    items[:] = keep


def shard_of(items: list[pytest.Item], index: int, count: int) -> list[pytest.Item]:
    """Share ``index`` of ``count`` (--shard I/N). Every check lands in exactly
    one share, and N jobs given the same arguments compute the same split: the
    checks, heaviest first (a check that starts a server of its own costs
    several ordinary ones), each go to the share with the least weight so far."""
    checks = sorted((item for item in items if is_check(item)), key=lambda item: (-_weight(item), item.nodeid))
    load = [0] * count
    mine: set[str] = set()
    for item in checks:
        share = load.index(min(load))
        load[share] += _weight(item)
        if share == index - 1:
            mine.add(item.nodeid)
    return [item for item in items if not is_check(item) or item.nodeid in mine]


def _weight(item: pytest.Item) -> int:
    """A rough cost, known before anything runs: starting a fresh server is the
    dearest part of a check, and an attack of the ROBUST area (thousands of
    connections or requests) costs several such checks."""
    if "fresh_target" not in getattr(item, "fixturenames", ()):
        return 1
    return 20 if requirements.get(ids_of(item)[0]).area == "ROBUST" else 5


# ---- one outcome per check -------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    ids = ids_of(item)
    if report.when == "setup":
        item.stash[SET_UP_TIME] = report.duration
    if not ids or report.when == "teardown" or (report.when == "setup" and report.passed):
        return
    settings = state_of(item.config).settings
    views = item.stash.get(TARGET_VIEWS, [])
    error = call.excinfo.value if call.excinfo is not None else None
    rerun = rerun_line(item, settings, ids)
    judged = judge(
        CheckEnding(
            ids,
            error=error,
            skip_reason=_skip_reason(report) if report.skipped else None,
            informational=item.get_closest_marker("informational") is not None,
            measurements=item.stash.get(MEASUREMENTS, []),
            transcripts=[probe.wire.transcript for view in views for probe in view.probes],
            deaths=_deaths(views),
            rerun=rerun,
            seed=settings.seed,
            harness_detail=str(report.longrepr) if report.longrepr is not None else "",
        )
    )
    check = CheckOutcome(
        nodeid=item.nodeid,
        target=target_of(item) or "?",
        ids=ids,
        verdict=judged.verdict,
        detail=judged.detail,
        explanation=judged.explanation,
        measurements=[dataclasses.asdict(m) for m in item.stash.get(MEASUREMENTS, [])],
        rerun=rerun,
        declared=_declared(item, views),
        cause=judged.cause,
        time=round(report.duration + (item.stash.get(SET_UP_TIME, 0.0) if report.when == "call" else 0.0), 4),
        failure=judged.failure,
        timelines=[picture.to_json() for picture in item.stash.get(TIMELINES, [])],
    )
    report.user_properties.append((USER_PROPERTY, json.dumps(check.to_json())))
    verdict = judged.verdict
    if verdict is Verdict.UNSUPPORTED:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, judged.detail)
    elif verdict is Verdict.NON_STRICT and not settings.strict:
        report.outcome = "passed"
        report.longrepr = None
        report.sections.append(("sockspec NON-STRICT", judged.explanation))
    elif verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT):
        report.outcome = "failed"
        report.longrepr = f"[{verdict.value}] {judged.explanation}"


SET_UP_TIME = pytest.StashKey[float]()  # starting a fresh target counts towards the check's time


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A check whose verdict is ERROR (the harness could not judge) is counted and
    named as pytest's errors are, never as a FAILED check of the target."""
    for name, value in getattr(report, "user_properties", ()):  # a CollectReport has none
        if name == USER_PROPERTY and json.loads(str(value))["verdict"] == Verdict.ERROR.value:
            return "error", "E", "ERROR"
    return None


def _deaths(views: list[Target]) -> list[str]:
    """How each of the check's target processes ended, if it ended on its own.
    An exit after the check's own SIGTERM is what that check judges, not a root cause."""
    found: list[str] = []
    for view in views:
        text = view.process.exit_report() if view.process is not None else None
        if text and "after the suite sent it" not in text and text not in found:
            found.append(text)
    return found


def _declared(item: pytest.Item, views: list[Target]) -> dict[str, str]:
    if views:
        return dict(views[0].declared.pairs)
    if CLIENT_FEATURES in item.stash:  # a client declares the features it has a command for
        features: list[str] = item.stash[CLIENT_FEATURES]
        return {"features": ",".join(features)}
    return {}


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


def rerun_line(item: pytest.Item, settings: RunSettings, ids: list[str]) -> str:
    """A command that runs just this case again, from any directory."""
    name = getattr(item, "originalname", item.name)
    return f"sockspec run {settings.target_args} --only {','.join(ids)} -k {shlex.quote(name)} --seed {settings.seed}"


# ---- what the terminal shows -----------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    targets = config.stash.get(RESULTS, None)
    if not targets:
        return
    settings = state_of(config).settings
    collector = config.pluginmanager.get_plugin("sockspec-results")
    assert isinstance(collector, ResultCollector)
    facts = collector.facts
    if config.getoption("tbstyle") == "no":  # sockspec run: pytest shows no failure, so the suite does
        terminalreporter.write(failures_text(targets, settings.strict))
    terminalreporter.write(
        terminal.render(
            targets,
            verbose=config.getoption("verbose") > 1,
            color=terminalreporter._tw.hasmarkup,
            facts=facts,
        )
    )
    terminalreporter.write_line(f"sockspec seed: {settings.seed} (re-run with --seed {settings.seed})")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(STATE, None)
    if state is None or not state.settings.specs:
        return None
    settings = state.settings
    return [
        f"sockspec targets: {', '.join(settings.specs)}; seed {settings.seed}"
        + (" (strict)" if settings.strict else "")
    ]
