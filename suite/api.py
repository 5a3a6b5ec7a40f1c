"""What check modules use: requirement marks, helpers for keys and timing,
and the ways a check says it cannot judge."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable

import pytest

from . import requirements
from .probe import HarnessError, Probe, Unsupported, Violation
from .targets.base import Target
from .timeline import Timeline

# The fixtures' types, for annotations in checks.
FreshTarget = Callable[..., contextlib.AbstractContextManager[Target]]
Measure = Callable[..., None]
StartTimeline = Callable[..., Timeline]

__all__ = [
    "FreshTarget",
    "HarnessError",
    "Measure",
    "Probe",
    "StartTimeline",
    "Timeline",
    "Unsupported",
    "Violation",
    "fresh_key",
    "informational",
    "not_applicable",
    "requirement",
    "stopwatch",
]

_counter = itertools.count()


def requirement(*ids: str) -> pytest.MarkDecorator:
    """Mark a check with the PROTOCOL.md requirement(s) it judges. Unknown IDs
    fail at import, so a typo can never create a requirement nobody wrote."""
    for requirement_id in ids:
        requirements.get(requirement_id)
    return pytest.mark.requirement(*ids)


informational = pytest.mark.informational
# The check mostly waits out the server's timers on an instance of its own: a worker
# may run it beside its next checks (suite.overlap).
waits = pytest.mark.waits


def not_applicable(reason: str) -> None:
    """The requirement does not apply to what the target declares."""
    raise Unsupported(f"not applicable: {reason}")


def fresh_key(label: str = "k") -> bytes:
    """A key no other check (or earlier run on a shared server) uses."""
    return f"sockspec-{label}-{os.getpid()}-{next(_counter)}-{os.urandom(4).hex()}".encode()


class stopwatch:  # used like a function: `with stopwatch() as t`
    def __enter__(self) -> stopwatch:
        self.start = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.start

    def now(self) -> float:
        return time.monotonic() - self.start
