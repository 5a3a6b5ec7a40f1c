"""The fixtures checks use: the targets (a shared instance, or a fresh one),
the clients under test, measurements and the seed. Registered by the plugin."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import requirements
from .certs import make_certificates
from .clients.certs import make_client_certificates
from .clients.under_test import ClientUnderTest
from .clients.zone import NAMES as ZONE_NAMES
from .probe import Measurement
from .profiles.dialects import Dialect, dialect_for
from .run_state import ids_of, state_of
from .targets.base import Target
from .targets.factory import TargetPool
from .timeline import Timeline


@pytest.fixture(scope="session")
def sockspec_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TargetPool]:
    state = state_of(request.config)
    settings = state.settings
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    pool = TargetPool(
        settings.specs,
        certs,
        settings.overrides,
        timeout=settings.timeout,
        ready_timeout=settings.ready_timeout,
        docker=state.docker,
        profile=settings.profile,
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
    """Start a separate instance: ``with fresh_target(idle=1.0, why=...) as t``
    (``maxclients=N``: with the client limit N, through the template's {maxclients})."""

    @contextlib.contextmanager
    def start(idle: float | None = None, why: str = "", maxclients: int | None = None) -> Iterator[Target]:
        kwargs: dict[str, Any] = {"why": why, "maxclients": maxclients}
        if idle is not None:
            kwargs["idle"] = idle
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
    state = state_of(request.config)
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
    for requirement_id in ids_of(request.node):
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
def timeline(request: pytest.FixtureRequest) -> Callable[..., Timeline]:
    """Start a concurrency picture (drawn in the HTML report): ``timeline(title,
    origin=time.monotonic())``, then ``.bar(label, sent, replied, outcome)``."""

    def start(title: str, origin: float, note: str = "", bound: float | None = None) -> Timeline:
        picture = Timeline(title, origin, note=note, bound=bound)
        request.node.stash.setdefault(TIMELINES, []).append(picture)
        return picture

    return start


@pytest.fixture(scope="session")
def dialect(request: pytest.FixtureRequest) -> Dialect:
    """How the run's profile speaks (--profile): a check written against it runs under either."""
    return dialect_for(state_of(request.config).settings.profile)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    return state_of(request.config).settings.seed


TARGET_VIEWS = pytest.StashKey[list[Target]]()
CLIENT_FEATURES = pytest.StashKey[list[str]]()  # the features a client has a command for
MEASUREMENTS = pytest.StashKey[list[Measurement]]()
TIMELINES = pytest.StashKey[list[Timeline]]()


def _require_features(request: pytest.FixtureRequest, target: Target) -> None:
    for requirement_id in ids_of(request.node):
        for feature in requirements.get(requirement_id).features:
            if not target.declared.has(feature):
                declared = ",".join(sorted(target.declared.features)) or "none"
                pytest.skip(
                    f"UNSUPPORTED: the target does not declare the optional feature '{feature}' (features={declared})"
                )
