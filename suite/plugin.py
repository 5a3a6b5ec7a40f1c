"""The pytest plugin (entry point ``sockspec``): options, the run's set-up,
targets and clients as fixtures, and one CheckOutcome per check.

Each job beside it has its own module: reading and checking options
(configuration), the first contact with each target (preflight), verdicts
(judge), Docker (docker.lifecycle), stray process groups (reaper), results
and reports (report.collect, report.terminal). It is inert in any pytest run
that names no target.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import configuration as hypothesis_configuration
from hypothesis import settings as hypothesis_settings

from . import configuration, preflight, reaper, requirements
from .area_by_area import AreaByArea
from .certs import make_certificates
from .clients.certs import make_client_certificates
from .clients.under_test import ClientUnderTest
from .clients.zone import NAMES as ZONE_NAMES
from .configuration import RunSettings, UsageProblem
from .docker import lifecycle
from .docker.environment import DockerEnvironment
from .judge import CheckEnding, judge
from .options import SHARED
from .outcome import CheckOutcome
from .probe import Measurement
from .report import terminal
from .report.collect import RESULTS, USER_PROPERTY, ResultCollector
from .report.explain import failures_text
from .report.roots import area_rank
from .targets.base import Target
from .targets.factory import TargetPool
from .verdicts import Verdict

# ---- options and set-up ----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sockspec", "sockspec: CloudHash/1 conformance")
    for option in SHARED:
        group.addoption(option.flag, **option.definition(for_plugin=True))
    group.addoption("--sockspec-strict", action="store_true", help="SHOULDs fail the run too (also: --strict)")
    # `sockspec run` has already started each target once, and explained any that did not answer.
    group.addoption("--sockspec-preflight-done", action="store_true", help=argparse.SUPPRESS)


@dataclasses.dataclass
class RunState:
    """The run as this process sees it (the controller, or one xdist worker)."""

    settings: RunSettings
    docker: DockerEnvironment | None = None
    docker_reason: str = ""  # why there is no Docker for the DNS scenarios
    groups_dir: Path | None = None  # the controller's record of every process group (reaper)
    scratch: Path | None = None  # Hypothesis's files for this run, removed at its end
    previous_handlers: dict[int, Any] = dataclasses.field(default_factory=dict)  # put back at the end (pytester)
    previous_hypothesis: tuple[Any, Any] | None = None


STATE = pytest.StashKey[RunState]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): the PROTOCOL.md requirement(s) a check covers")
    config.addinivalue_line("markers", "informational: the check measures; its verdict is INFO")
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
    if not settings.has_target:
        return
    state.previous_handlers = reaper.interrupts_unwind()
    _no_files_left_behind(config, state)
    if worker is None:
        state.groups_dir = reaper.open_run()
        if settings.area_by_area:
            config.pluginmanager.register(AreaByArea([*settings.specs, *settings.clients]), "sockspec-area-by-area")
    if settings.image_bases or settings.client_bases or settings.dns:
        try:
            docker = lifecycle.set_up(
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
    reaper.restore_handlers(state.previous_handlers)
    if state.previous_hypothesis is not None:
        home, profile = state.previous_hypothesis
        hypothesis_configuration.set_hypothesis_home_dir(home)
        hypothesis_settings.load_profile(profile)
    if state.scratch is not None:
        shutil.rmtree(state.scratch, ignore_errors=True)


def _state(config: pytest.Config) -> RunState:
    return config.stash[STATE]


def _ids(item: pytest.Item) -> list[str]:
    return [i for mark in item.iter_markers("requirement") for i in mark.args]


def _is_check(item: pytest.Item) -> bool:
    return bool(_ids(item))


# ---- collection ------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not metafunc.definition.get_closest_marker("requirement"):
        return
    settings = _state(metafunc.config).settings
    for fixture, names in (("target_name", list(settings.specs)), ("client_name", list(settings.clients))):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, names, ids=names, scope="session")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    settings = _state(config).settings
    for item in checks:
        for requirement_id in _ids(item):
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
    keep = [item for item in items if not _is_check(item) or _target_of(item) is not None]
    if settings.only:
        keep = [
            item
            for item in keep
            if not _is_check(item) or any(configuration.matches(i, settings.only) for i in _ids(item))
        ]
        if not any(_is_check(item) for item in keep):
            pytest.exit(f"sockspec: --only {','.join(settings.only)} selects no check for these targets", returncode=2)
    deselected = [item for item in items if item not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    # The spec's order of areas (pytest's own is the modules' names): FRAME first, as a
    # server is built, and so that --area-by-area can stop after the first area with a FAIL.
    keep.sort(key=lambda item: area_rank(requirements.get(_ids(item)[0]).area) if _is_check(item) else -1)
    items[:] = keep


def _target_of(item: pytest.Item) -> str | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    for fixture in ("target_name", "client_name"):
        if isinstance(params.get(fixture), str):
            return str(params[fixture])
    return None


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sockspec_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TargetPool]:
    state = _state(request.config)
    settings = state.settings
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    pool = TargetPool(
        settings.specs,
        certs,
        settings.overrides,
        timeout=settings.timeout,
        ready_timeout=settings.ready_timeout,
        docker=state.docker,
    )
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def target_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(request: pytest.FixtureRequest, sockspec_pool: TargetPool, target_name: str) -> Iterator[Target]:
    """The shared instance of the target, with this check's own connections."""
    shared = sockspec_pool.shared(target_name)
    view = dataclasses.replace(shared, probes=[])
    request.node.stash[TARGET_VIEWS] = [view]
    _require_features(request, view)
    yield view
    view.close_probes()


@pytest.fixture
def fresh_target(
    request: pytest.FixtureRequest, sockspec_pool: TargetPool, target_name: str
) -> Iterator[Callable[..., contextlib.AbstractContextManager[Target]]]:
    """Start a separate instance: ``with fresh_target(idle=1.0, why=...) as t``."""

    @contextlib.contextmanager
    def start(idle: float | None = None, why: str = "") -> Iterator[Target]:
        kwargs: dict[str, Any] = {"why": why} if idle is None else {"idle": idle, "why": why}
        with sockspec_pool.fresh(target_name, **kwargs) as instance:
            request.node.stash.setdefault(TARGET_VIEWS, []).append(instance)
            _require_features(request, instance)
            yield instance

    yield start


@pytest.fixture(scope="session")
def sockspec_clients(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ClientUnderTest]]:
    """Every client under test, with the certificates its scenarios show it."""
    state = _state(request.config)
    settings = state.settings
    # The good chain is valid for every name and address that leads to the suite's
    # servers, so that a TLS client's DNS scenarios are about DNS only.
    names = ["localhost", "127.0.0.1", "::1", *ZONE_NAMES]
    plan = state.docker.plan if state.docker is not None else None
    if plan is not None:
        names += [address for address in (plan.gateway, plan.gateway6) if address]
    certs = make_client_certificates(tmp_path_factory.mktemp("client-certs"), names)
    worker = request.config.workerinput.get("workerid", "gw0") if hasattr(request.config, "workerinput") else "gw0"
    base_slot = int(worker.removeprefix("gw") or 0) * len(settings.clients)
    reason = state.docker_reason or ("--no-dns was given" if not settings.dns else "Docker is not set up")
    clients = {
        name: ClientUnderTest(spec, certs, state.docker, reason, base_slot + index)
        for index, (name, spec) in enumerate(settings.clients.items())
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="session")
def client_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(
    request: pytest.FixtureRequest, sockspec_clients: dict[str, ClientUnderTest], client_name: str
) -> ClientUnderTest:
    """The client under test; its scenarios run it against the suite's servers."""
    under_test = sockspec_clients[client_name]
    for requirement_id in _ids(request.node):
        for feature in requirements.get(requirement_id).features:
            if under_test.spec.template(feature) is None:
                pytest.skip(
                    f"UNSUPPORTED: the client offers no '{feature}' (give --client-cmd-for {feature}=TEMPLATE"
                    + (", or use {ca} in --client-cmd" if feature == "tls" else "")
                    + ")"
                )
    request.node.stash[CLIENT_FEATURES] = under_test.spec.features()
    return under_test


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Record a measurement (shown in the report; verdict INFO for informational checks)."""

    def record(name: str, value: float, unit: str, note: str = "") -> None:
        request.node.stash.setdefault(MEASUREMENTS, []).append(Measurement(name, value, unit, note))

    return record


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    return _state(request.config).settings.seed


TARGET_VIEWS = pytest.StashKey[list[Target]]()
CLIENT_FEATURES = pytest.StashKey[list[str]]()  # the features a client has a command for
MEASUREMENTS = pytest.StashKey[list[Measurement]]()


def _require_features(request: pytest.FixtureRequest, target: Target) -> None:
    for requirement_id in _ids(request.node):
        for feature in requirements.get(requirement_id).features:
            if not target.declared.has(feature):
                declared = ",".join(sorted(target.declared.features)) or "none"
                pytest.skip(
                    f"UNSUPPORTED: the target does not declare the optional feature '{feature}' (features={declared})"
                )


# ---- one outcome per check -------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    ids = _ids(item)
    if not ids or report.when == "teardown" or (report.when == "setup" and report.passed):
        return
    settings = _state(item.config).settings
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
        target=_target_of(item) or "?",
        ids=ids,
        verdict=judged.verdict,
        detail=judged.detail,
        explanation=judged.explanation,
        measurements=[dataclasses.asdict(m) for m in item.stash.get(MEASUREMENTS, [])],
        rerun=rerun,
        declared=_declared(item, views),
        cause=judged.cause,
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
    settings = _state(config).settings
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
            only=facts.only,
            interrupted=facts.interrupted,
            stopped=facts.stopped,
            strict=facts.strict,
            allow_unchecked=facts.allow_unchecked,
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
