"""Checks that wait, run side by side (``--overlap N``).

Most of a conformance run is spent waiting out timers the spec sets: each
CH-TIMEOUT check waits for a 1 s idle timeout on an instance of its own, and
CH-LIFE-8 for the 4 s shutdown deadline. A worker that waited with each of
them in turn would keep its core idle, so a check marked ``waits`` (see
suite.api) is started on a thread of its own and the worker goes on to its
next checks; up to N such checks wait at once beside the one the worker is
running. A check's verdict is reported when it ends, exactly as if it had run
alone: its set-up and teardown still run on the worker's main thread, in
pytest's order, and only its body runs aside. Nothing in a check's bounds
changes, since they are derived from the declared values with the margin of a
loaded machine already.

A check runs aside only if everything it uses lives on after its teardown:
its own instance (``fresh_target``), its measurements and pictures, the
session's targets. One that uses the shared instance's connections (whose
teardown closes them), or a Hypothesis test (whose engine keeps per-thread
state), runs in the ordinary way whatever its mark says.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import pytest
from _pytest.runner import CallInfo, call_and_report

WAITS = "waits"
MARKER = f"{WAITS}: the check mostly waits out the server's timers; it may run beside the worker's next checks"
# Fixtures whose teardown leaves nothing a running check needs (the function-scoped ones
# here only hand out factories and recorders writing to the item's own stash).
LIVES_ON = frozenset(
    {"fresh_target", "measure", "timeline", "seed", "dialect", "request", "target_name", "sockspec_pool"}
    | {"tmp_path_factory"}
)
JOIN_SLICE = 0.25  # seconds: a worker waiting for a check aside still runs its signal handlers


def runs_aside(item: pytest.Item) -> bool:
    """Whether ``item`` may run on a thread beside the worker's next checks."""
    return (
        isinstance(item, pytest.Function)
        and item.get_closest_marker(WAITS) is not None
        and not getattr(item.obj, "is_hypothesis_test", False)
        and set(item.fixturenames) <= LIVES_ON
    )


def spread(items: list[pytest.Item]) -> list[pytest.Item]:
    """``items`` with the checks that run aside spread evenly among the others
    (each part keeping its order), the first of them first and the last
    before the final others: xdist hands each worker a contiguous share, and
    a worker keeps its core busy only while it has other checks to run beside
    those that wait."""
    aside: list[pytest.Item] = []
    others: list[pytest.Item] = []
    for item in items:
        (aside if runs_aside(item) else others).append(item)
    if not aside or not others:
        return items
    before: dict[int, list[pytest.Item]] = {}  # the others' index -> the aside checks that go before it
    for number, item in enumerate(aside):
        before.setdefault(number * len(others) // len(aside), []).append(item)
    merged: list[pytest.Item] = []
    for index, item in enumerate(others):
        merged += [*before.get(index, []), item]
    return merged


@dataclass
class Aside:
    """A check started aside: its set-up and teardown reports, and its body's outcome once it ends."""

    item: pytest.Function
    setup: pytest.TestReport
    teardown: pytest.TestReport | None = None
    call: CallInfo[None] | None = None
    done: bool = True


class SideBySide:
    """Registered on every process that runs checks when ``--overlap`` is above 0."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self.aside: list[Aside] = []
        self.ended = threading.Condition()  # a body has ended

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        self._report(self._ended())
        if nextitem is None:
            # The last check: its teardown ends the session's fixtures, which the checks aside still use.
            self._report_all()
            return None
        if not runs_aside(item) or item.config.getoption("usepdb", False):
            return None
        assert isinstance(item, pytest.Function)
        while len(self.aside) >= self.lanes:
            self._report(self._wait_for_an_end())
        self.aside.append(self._start(item, nextitem))
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        result = yield  # an interrupt skips what follows: the reaper kills the checks' servers
        self._report_all()
        return result

    def _start(self, item: pytest.Function, nextitem: pytest.Item) -> Aside:
        started = Aside(item, call_and_report(item, "setup", log=False))
        if started.setup.passed:
            # The test function with the fixtures set-up gave it, as pytest calls it, but not
            # through pytest_runtest_call: its wrappers (output capture, logging) belong to the
            # worker's main thread.
            arguments = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}
            started.done = False
            threading.Thread(
                target=self._body, args=(started, item.obj, arguments), name=f"aside: {item.nodeid}", daemon=True
            ).start()
        # pytest tears a check down before it sets the next one up; what the body still
        # uses lives on (LIVES_ON), so its teardown can come now, in pytest's order.
        started.teardown = call_and_report(item, "teardown", log=False, nextitem=nextitem)
        return started

    def _body(self, check: Aside, function: Callable[..., object], arguments: dict[str, object]) -> None:
        outcome = CallInfo.from_call(lambda: function(**arguments), when="call", reraise=())
        with self.ended:
            check.call, check.done = outcome, True  # type: ignore[assignment]
            self.ended.notify_all()

    def _ended(self) -> list[Aside]:
        with self.ended:  # re-entrant: the condition's lock is an RLock
            return [check for check in self.aside if check.done]

    def _wait_for_an_end(self) -> list[Aside]:
        """The checks aside that have ended, once one has; the wait is cut into
        slices so that a signal's handler runs on this thread meanwhile."""
        with self.ended:
            while not (ended := self._ended()):
                self.ended.wait(JOIN_SLICE)
            return ended

    def _report_all(self) -> None:
        while self.aside:
            self._report(self._wait_for_an_end())

    def _report(self, ended: list[Aside]) -> None:
        for check in ended:
            self.aside.remove(check)
            with _as_the_check_running(check.item):
                _log(check)


@contextlib.contextmanager
def _as_the_check_running(item: pytest.Item) -> Iterator[None]:
    """An xdist worker sends each report with the index of the check it is
    running, and asserts that they match: while a check aside reports, that
    index is the check's own."""
    worker = next((p for p in item.config.pluginmanager.get_plugins() if type(p).__name__ == "WorkerInteractor"), None)
    if worker is None:
        yield
        return
    running = worker.item_index
    worker.item_index = item.session.items.index(item)
    try:
        yield
    finally:
        worker.item_index = running


def _log(check: Aside) -> None:
    """The check's reports, in pytest's order, as if it had just run alone."""
    item, hook = check.item, check.item.ihook
    hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    hook.pytest_runtest_logreport(report=check.setup)
    if check.call is not None:
        hook.pytest_runtest_logreport(report=hook.pytest_runtest_makereport(item=item, call=check.call))
    if check.teardown is not None:
        hook.pytest_runtest_logreport(report=check.teardown)
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    item._request = False  # type: ignore[assignment]  # as pytest's runtestprotocol leaves a check
    item.funcargs = None  # type: ignore[assignment]
