"""The pytest plugin (entry point ``sockspec``): options, targets as
fixtures, one verdict per requirement, explanations, reports, exit codes.

It is inert in any pytest run that collects no sockspec checks.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fnmatch
import json
import random
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import requirements
from .certs import make_certificates
from .clients.certs import make_client_certificates
from .clients.spec import MAIN, ClientSpec, check_template
from .clients.spec import reference_spec as client_reference_spec
from .clients.under_test import ClientUnderTest
from .clients.zone import NAMES as ZONE_NAMES
from .docker.engine import DockerUnavailable
from .docker.environment import DockerEnvironment
from .docker.images import load_bases, local_facts, resolve_bases
from .options import SHARED
from .outcome import CheckOutcome, verdict_for_violation
from .probe import HarnessError, Measurement, Unsupported, Violation
from .report import files, terminal
from .report.explain import explain, render_transcript
from .report.results import aggregate, exit_code
from .requirements import OPTIONAL_FEATURES
from .targets.base import Target
from .targets.factory import TargetPool, TargetSpec, parse_address, reference_spec
from .targets.process import TargetNotReady
from .targets.reference import resolve_architectures
from .verdicts import Verdict
from .wire import WireTimeout

USER_PROPERTY = "sockspec"
# Exceptions that mean the target itself misbehaved on the wire.
TARGET_FAULTS = (ConnectionError, WireTimeout, TimeoutError, BrokenPipeError)


# ---- options ---------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sockspec", "sockspec: CloudHash/1 conformance")
    for option in SHARED:
        group.addoption(option.flag, **option.definition(for_plugin=True))
    group.addoption("--sockspec-strict", action="store_true", help="SHOULDs fail the run too (also: --strict)")


class UsageProblem(Exception):
    pass


@dataclasses.dataclass
class SockspecConfig:
    specs: dict[str, TargetSpec]
    overrides: dict[str, str]
    strict: bool
    seed: int
    only: list[str]
    timeout: float
    outcomes: list[CheckOutcome] = dataclasses.field(default_factory=list)
    pool: TargetPool | None = None
    target_args: str = ""
    image_bases: list[str] = dataclasses.field(default_factory=list)
    docker: Any = None  # DockerEnvironment when --image targets or clients are checked
    clients: dict[str, ClientSpec] = dataclasses.field(default_factory=dict)
    client_bases: list[str] = dataclasses.field(default_factory=list)
    dns: bool = False  # clients are checked and Docker may be used for the DNS scenarios
    docker_reason: str = ""  # why there is no Docker for the DNS scenarios


def _read_options(config: pytest.Config) -> SockspecConfig:
    specs: dict[str, TargetSpec] = {}
    if config.getoption("reference"):
        try:
            for arch in resolve_architectures(config.getoption("reference")):
                specs[arch] = reference_spec(arch)
        except ValueError as error:
            raise UsageProblem(str(error)) from None
    image_bases: list[str] = []
    for item in config.getoption("image"):
        base_spec, _, arch_spec = item.partition(":")
        try:
            bases = resolve_bases(base_spec)
            archs = resolve_architectures(arch_spec or "all")
        except ValueError as error:
            raise UsageProblem(str(error)) from None
        for base in bases:
            image_bases.append(base.key)
            for arch in archs:
                name = f"{arch}@{base.key}"
                specs[name] = TargetSpec(name, image=base.key, arch=arch)
    commands = config.getoption("cmd")
    for index, template in enumerate(commands):
        name = "cmd" if len(commands) == 1 else f"cmd{index + 1}"
        specs[name] = TargetSpec(name, template=template)
    addresses = config.getoption("address")
    ca = config.getoption("ca")
    if ca is not None and not Path(ca).is_file():
        raise UsageProblem(f"--ca {ca}: no such file")
    for index, text in enumerate(addresses):
        name = "address" if len(addresses) == 1 else f"address{index + 1}"
        try:
            endpoint = parse_address(text)
        except ValueError as error:
            raise UsageProblem(str(error)) from None
        specs[name] = TargetSpec(
            name, address=endpoint, ca=Path(ca) if ca else None, hostname=config.getoption("tls_hostname")
        )
    overrides = {}
    for item in config.getoption("declare"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageProblem(f"--declare wants KEY=VALUE, not {item!r}")
        overrides[key] = value
    clients, client_bases = _read_client_options(config)
    only = [p.strip() for p in (config.getoption("only") or "").split(",") if p.strip()]
    timeout = config.getoption("check_timeout")
    if timeout <= 0:
        raise UsageProblem("--check-timeout must be positive")
    seed = config.getoption("seed")
    if hasattr(config, "workerinput"):
        seed = config.workerinput["sockspec_seed"]
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    strict = bool(config.getoption("sockspec_strict") or config.getoption("strict", False))
    args = [spec.describe() for spec in specs.values() if spec.address is not None or spec.name.startswith("cmd")]
    if config.getoption("reference"):
        args.insert(0, f"--reference {config.getoption('reference')}")
    args += [f"--image {item}" for item in config.getoption("image")]
    args += [f"--declare {shlex.quote(d)}" for d in config.getoption("declare")]
    args += [client.describe() for client in clients.values()]
    if clients and config.getoption("no_dns"):
        args.append("--no-dns")
    return SockspecConfig(
        specs,
        overrides,
        strict,
        seed,
        only,
        timeout,
        target_args=" ".join(args),
        image_bases=sorted(set(image_bases)),
        clients=clients,
        client_bases=client_bases,
        dns=bool(clients) and not config.getoption("no_dns"),
    )


def _read_client_options(config: pytest.Config) -> tuple[dict[str, ClientSpec], list[str]]:
    clients: dict[str, ClientSpec] = {}
    per_feature: dict[str, str] = {}
    for item in config.getoption("client_cmd_for"):
        feature, sep, template = item.partition("=")
        if not sep or feature not in OPTIONAL_FEATURES:
            known = ", ".join(sorted(OPTIONAL_FEATURES))
            raise UsageProblem(f"--client-cmd-for wants FEATURE=TEMPLATE, FEATURE one of {known}; not {item!r}")
        per_feature[feature] = template
    templates = config.getoption("client_cmd")
    if per_feature and not templates:
        raise UsageProblem("--client-cmd-for needs a --client-cmd")
    for template in [*templates, *per_feature.values()]:
        try:
            check_template(template, required=("host", "port"))
        except ValueError as error:
            raise UsageProblem(str(error)) from None
    for index, template in enumerate(templates):
        name = "client" if len(templates) == 1 else f"client{index + 1}"
        clients[name] = ClientSpec(
            name, {MAIN: template, **per_feature}, container_image=config.getoption("client_cmd_image")
        )
    if config.getoption("client_reference"):
        clients["client-reference"] = client_reference_spec()
    client_bases: list[str] = []
    for item in config.getoption("client_image"):
        try:
            bases = resolve_bases(item)
        except ValueError as error:
            raise UsageProblem(str(error)) from None
        for base in bases:
            client_bases.append(base.key)
            spec = client_reference_spec(image=base.key)
            clients[spec.name] = spec
    return clients, sorted(set(client_bases))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): the PROTOCOL.md requirement(s) a check covers")
    config.addinivalue_line("markers", "informational: the check measures; its verdict is INFO")
    try:
        state = _read_options(config)
    except UsageProblem as error:
        # pytest would say 4; the suite's contract is 2 for usage errors.
        pytest.exit(f"sockspec: {error}", returncode=2)
    config.stash[STATE] = state
    config.pluginmanager.register(ResultCollector(config), "sockspec-results")
    if state.image_bases or state.client_bases or state.dns:
        _set_up_docker(config, state, required=bool(state.image_bases or state.client_bases))
    if config.getoption("hypothesis_seed", None) is None and hasattr(config.option, "hypothesis_seed"):
        config.option.hypothesis_seed = state.seed


def pytest_configure_node(node: Any) -> None:  # xdist: workers get the controller's seed and Docker set-up
    state = node.config.stash[STATE]
    node.workerinput["sockspec_seed"] = state.seed
    node.workerinput["sockspec_docker_reason"] = state.docker_reason
    if state.docker is not None:
        node.workerinput["sockspec_docker"] = state.docker.handover()


def _set_up_docker(config: pytest.Config, state: SockspecConfig, *, required: bool) -> None:
    """The controller builds the images, creates the run's networks and starts
    the DNS server; workers attach to them. Everything is swept when the run
    ends, also on Ctrl-C and SIGTERM. Where only clients on this machine want
    Docker (for the DNS scenarios), it is not ``required``: without it those
    scenarios are UNSUPPORTED with the reason, and the run goes on."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        state.docker_reason = worker.get("sockspec_docker_reason", "")
        if "sockspec_docker" not in worker:
            return
    try:
        if worker is not None:
            state.docker = DockerEnvironment.attach(worker["sockspec_docker"])
            return
        known = load_bases()
        state.docker = DockerEnvironment.create(
            [known[key] for key in state.image_bases],
            log=lambda line: print(f"sockspec: {line}", flush=True),
            client_bases=[known[key] for key in state.client_bases],
            dns_base=next(iter(known.values())) if state.dns else None,
        )
    except Exception as error:
        if not required:
            state.docker_reason = (
                str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            )
            return
        if isinstance(error, DockerUnavailable):
            pytest.exit(f"sockspec: --image and --client-image need Docker: {error}", returncode=2)
        pytest.exit(f"sockspec: setting up Docker failed: {error}", returncode=2)
    _clean_up_on_exit(state.docker)


def _clean_up_on_exit(environment: DockerEnvironment) -> None:
    atexit.register(environment.close)
    if threading.current_thread() is threading.main_thread():
        # A plain SIGTERM would end the run without its cleanup; make it a Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.docker is not None:
        state.docker.close()


STATE = pytest.StashKey[SockspecConfig]()


def _state(config: pytest.Config) -> SockspecConfig:
    return config.stash[STATE]


def _ids(item: pytest.Item) -> list[str]:
    return [i for mark in item.iter_markers("requirement") for i in mark.args]


def _is_check(item: pytest.Item) -> bool:
    return bool(_ids(item))


# ---- collection --------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not metafunc.definition.get_closest_marker("requirement"):
        return
    state = _state(metafunc.config)
    for fixture, names in (("target_name", list(state.specs)), ("client_name", list(state.clients))):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, names, ids=names, scope="session")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    checks = [item for item in items if _is_check(item)]
    if not checks:
        return
    state = _state(config)
    for item in checks:
        for requirement_id in _ids(item):
            try:
                requirements.get(requirement_id)
            except KeyError as error:
                pytest.exit(f"sockspec: {item.nodeid}: {error}", returncode=2)
    if not state.specs and not state.clients:
        pytest.exit(
            "sockspec: no target; use --reference ARCH|all, --cmd TEMPLATE, --address HOST:PORT"
            " or, for clients, --client-cmd TEMPLATE, --client-reference, --client-image IMAGE",
            returncode=2,
        )
    # A check meant for servers has nothing to run against in a clients-only run, and the reverse.
    orphans = [item for item in checks if _target_of(item) is None]
    if orphans:
        config.hook.pytest_deselected(items=orphans)
        items[:] = [item for item in items if item not in orphans]
    if state.only:
        keep = [item for item in items if not _is_check(item) or any(_matches(i, state.only) for i in _ids(item))]
        deselected = [item for item in items if item not in keep]
        if not any(_is_check(item) for item in keep):
            pytest.exit(f"sockspec: --only {','.join(state.only)} selects no check", returncode=2)
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def _target_of(item: pytest.Item) -> str | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    for fixture in ("target_name", "client_name"):
        if isinstance(params.get(fixture), str):
            return str(params[fixture])
    return None


def _matches(requirement_id: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(requirement_id, p) or requirement_id == p for p in patterns)


# ---- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="session")
def sockspec_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TargetPool]:
    state = _state(request.config)
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    pool = TargetPool(state.specs, certs, state.overrides, timeout=state.timeout, docker=state.docker)
    state.pool = pool
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def target_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(request: pytest.FixtureRequest, sockspec_pool: TargetPool, target_name: str) -> Iterator[Target]:
    """The shared instance of the target, with this check's own connections."""
    try:
        shared = sockspec_pool.shared(target_name)
    except HarnessError as error:
        raise HarnessError(str(error)) from None
    view = dataclasses.replace(shared, probes=[])
    _require_features(request, view)
    request.node.stash[TARGET_VIEWS] = [view]
    yield view
    view.close_probes()


@pytest.fixture
def fresh_target(
    request: pytest.FixtureRequest, sockspec_pool: TargetPool, target_name: str
) -> Iterator[Callable[..., contextlib.AbstractContextManager[Target]]]:
    """Start a separate instance: ``with fresh_target(idle=1.0, why=...) as t``."""

    @contextlib.contextmanager
    def start(idle: float | None = None, why: str = "") -> Iterator[Target]:
        kwargs = {"why": why} if idle is None else {"idle": idle, "why": why}
        with sockspec_pool.fresh(target_name, **kwargs) as instance:
            _require_features(request, instance)
            request.node.stash.setdefault(TARGET_VIEWS, []).append(instance)
            yield instance

    yield start


@pytest.fixture(scope="session")
def sockspec_clients(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ClientUnderTest]]:
    """Every client under test, with the certificates its scenarios show it."""
    state = _state(request.config)
    # The good chain is valid for every name and address that leads to the suite's
    # servers, so that a TLS client's DNS scenarios are about DNS only.
    names = ["localhost", "127.0.0.1", "::1", *ZONE_NAMES]
    plan = state.docker.plan if state.docker is not None else None
    if plan is not None:
        names += [address for address in (plan.gateway, plan.gateway6) if address]
    certs = make_client_certificates(tmp_path_factory.mktemp("client-certs"), names)
    worker = request.config.workerinput.get("workerid", "gw0") if hasattr(request.config, "workerinput") else "gw0"
    base_slot = int(worker.removeprefix("gw") or 0) * len(state.clients)
    reason = state.docker_reason or ("--no-dns was given" if not state.dns else "Docker is not set up")
    clients = {
        name: ClientUnderTest(spec, certs, state.docker, reason, base_slot + index)
        for index, (name, spec) in enumerate(state.clients.items())
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
    return _state(request.config).seed


TARGET_VIEWS = pytest.StashKey[list[Target]]()
CLIENT_FEATURES = pytest.StashKey[list[str]]()
MEASUREMENTS = pytest.StashKey[list[Measurement]]()


def _require_features(request: pytest.FixtureRequest, target: Target) -> None:
    for requirement_id in _ids(request.node):
        for feature in requirements.get(requirement_id).features:
            if not target.declared.has(feature):
                declared = ",".join(sorted(target.declared.features)) or "none"
                pytest.skip(
                    f"UNSUPPORTED: the target does not declare the optional feature '{feature}' (features={declared})"
                )


# ---- verdicts ----------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    ids = _ids(item)
    if not ids:
        return
    if report.when == "teardown" or (report.when == "setup" and report.passed):
        return
    state = _state(item.config)
    target = _target_of(item) or "?"
    verdict, detail, explanation = _judge(item, call, report, ids, state)
    measurements = [dataclasses.asdict(m) for m in item.stash.get(MEASUREMENTS, [])]
    views = item.stash.get(TARGET_VIEWS, [])
    check = CheckOutcome(
        nodeid=item.nodeid,
        target=target,
        ids=ids,
        verdict=verdict,
        detail=detail,
        explanation=explanation,
        measurements=measurements,
        rerun=_rerun(item, state),
        declared=_declared(item, views),
    )
    report.user_properties.append((USER_PROPERTY, json.dumps(check.to_json())))
    if verdict is Verdict.UNSUPPORTED:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, detail)
    elif verdict is Verdict.NON_STRICT and not state.strict:
        report.outcome = "passed"
        report.longrepr = None
        report.sections.append(("sockspec NON-STRICT", explanation))
    elif verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NON_STRICT):
        report.outcome = "failed"
        report.longrepr = f"[{verdict.value}] {explanation}"


def _declared(item: pytest.Item, views: list[Target]) -> dict[str, str]:
    if views:
        return dict(views[0].declared.pairs)
    if CLIENT_FEATURES in item.stash:  # a client declares the features it has a command for
        return {"features": ",".join(item.stash[CLIENT_FEATURES])}
    return {}


def _judge(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, ids: list[str], state: SockspecConfig
) -> tuple[Verdict, str, str]:
    specs = [requirements.get(i) for i in ids]
    informational = item.get_closest_marker("informational") is not None
    if call.excinfo is None:
        if report.skipped:
            return Verdict.UNSUPPORTED, _skip_reason(report), ""
        if informational:
            measured = item.stash.get(MEASUREMENTS, [])
            text = "; ".join(f"{m.name} = {m.value:g} {m.unit}{f' ({m.note})' if m.note else ''}" for m in measured)
            return Verdict.INFO, text, ""
        return Verdict.PASS, "", ""
    error = call.excinfo.value
    violation = _find(error, Violation)
    if violation is not None:
        verdict = verdict_for_violation(ids)
        return verdict, violation.summary, explain(violation, specs, _rerun(item, state), state.seed)
    if report.skipped or _find(error, Unsupported) is not None:
        reason = str(_find(error, Unsupported) or _skip_reason(report))
        return Verdict.UNSUPPORTED, reason.removeprefix("UNSUPPORTED: "), ""
    harness = _find(error, (HarnessError, TargetNotReady))
    if harness is not None:
        return Verdict.ERROR, str(harness), f"harness error (not the target's fault): {harness}"
    fault = _find(error, TARGET_FAULTS)
    if fault is not None:
        summary = _describe_fault(fault)
        views = item.stash.get(TARGET_VIEWS, [])
        transcript_lines: list[str] = []
        for view in views:
            for probe in view.probes:
                transcript_lines += ["", *render_transcript(probe.wire.transcript)]
        text = "\n".join(
            [f"{s.id} ({s.level}) — {s.title}" for s in specs]
            + [
                "",
                f"What went wrong: {summary}",
                *transcript_lines,
                "",
                f"Re-run just this case: {_rerun(item, state)}",
            ]
        )
        return verdict_for_violation(ids), summary, text
    summary = f"{type(error).__name__}: {error}"
    longrepr = str(report.longrepr) if report.longrepr is not None else ""
    return Verdict.ERROR, summary, f"harness error (not the target's fault): {summary}\n\n{longrepr}"


def _find(error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The exception of ``kinds`` that was raised: the error itself, a member
    of an exception group, or an explicit cause (``raise ... from``). The
    implicit context is not followed: a HarnessError raised while handling a
    refused connection is still the harness's problem."""
    if isinstance(error, kinds):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _find(inner, kinds)
            if found is not None:
                return found
    cause = error.__cause__
    return _find(cause, kinds) if cause is not None and cause is not error else None


def _describe_fault(fault: BaseException) -> str:
    if isinstance(fault, ConnectionRefusedError):
        return "the target refused the connection (nothing listening, or the backlog overflowed)"
    if isinstance(fault, ConnectionResetError):
        return "the target reset the connection (RST)"
    if isinstance(fault, BrokenPipeError):
        return "the target closed the connection while the suite was still sending"
    if isinstance(fault, (WireTimeout, TimeoutError)):
        return "the target did not answer before the deadline"
    return f"{type(fault).__name__}: {fault}"


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ").removeprefix("UNSUPPORTED: ")
    return str(longrepr or "")


def _rerun(item: pytest.Item, state: SockspecConfig) -> str:
    return f"pytest {shlex.quote(item.nodeid)} {state.target_args} --seed {state.seed}".strip()


# ---- results -----------------------------------------------------------------


class ResultCollector:
    """Gathers every check's outcome (on the xdist controller too, where the
    workers' reports arrive) and turns them into reports and the exit code.
    One per pytest session: nested runs (pytester) never mix their results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.outcomes: list[CheckOutcome] = []
        self.broken_modules: list[str] = []

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
        if not self.outcomes or hasattr(config, "workerinput"):
            return
        state = _state(config)
        descriptions = {name: spec.describe() for name, spec in state.specs.items()}
        descriptions.update({name: client.describe() for name, client in state.clients.items()})
        targets = aggregate(self.outcomes, descriptions)
        for target in targets:
            target.declared = next((c.declared for c in self.outcomes if c.target == target.name and c.declared), {})
            spec = state.specs.get(target.name)
            client = state.clients.get(target.name)
            if client is not None:
                target.kind = "client"
                if client.image is not None and state.docker is not None:
                    target.environment = dict(state.docker.facts.get(f"client@{client.image}", {}))
                    target.arch, target.image = "reference-client", client.image
                elif client.name == "client-reference":
                    target.environment = local_facts()
            elif spec is not None and spec.image is not None and state.docker is not None:
                target.environment = dict(state.docker.facts.get(spec.image, {}))
                target.arch, target.image = spec.arch, spec.image
            elif spec is not None and spec.template == reference_spec(spec.name).template:
                target.environment = local_facts()
        config.stash[RESULTS] = targets
        if config.getoption("sockspec_json"):
            files.write_json(config.getoption("sockspec_json"), targets, state.strict, state.seed)
        if config.getoption("sockspec_junit"):
            files.write_junit(config.getoption("sockspec_junit"), targets, state.strict)
        if self.broken_modules:
            session.exitstatus = pytest.ExitCode.INTERRUPTED  # the suite's own fault: exit 2 from sockspec
        elif int(exitstatus) in (0, 1):  # leave pytest's own problems (interrupted, usage) alone
            session.exitstatus = exit_code(targets, state.strict)


RESULTS = pytest.StashKey[list[Any]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    targets = config.stash.get(RESULTS, None)
    if not targets:
        return
    color = terminalreporter._tw.hasmarkup
    terminalreporter.write(terminal.render(targets, verbose=config.getoption("verbose") > 1, color=color))
    state = _state(config)
    terminalreporter.write_line(f"sockspec seed: {state.seed} (re-run with --seed {state.seed})")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(STATE, None)
    if state is None or not state.specs:
        return None
    return [f"sockspec targets: {', '.join(state.specs)}; seed {state.seed}" + (" (strict)" if state.strict else "")]
