"""From how a check ended to its verdict, a one-line detail and the
explanation shown for a failure. Pure: it sees the exception, never pytest.

- A Violation: the target broke the requirement (FAIL, or NON-STRICT for SHOULDs).
- A refused, reset or silent connection outside a Violation: the same, said plainly.
- Unsupported or a skip: UNSUPPORTED with the reason.
- HarnessError, TargetNotReady or anything else: ERROR, never the target's fault.

A target that has exited is named as the cause of whatever failed after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import requirements
from .outcome import verdict_for_violation
from .probe import HarnessError, Measurement, Unsupported, Violation
from .report.explain import explain, structured
from .targets.process import TargetNotReady
from .verdicts import Verdict
from .wire import Transcript, WireTimeout

# Exceptions that mean the target itself misbehaved on the wire.
TARGET_FAULTS = (ConnectionError, WireTimeout, TimeoutError, BrokenPipeError)


@dataclass
class CheckEnding:
    """What the plugin knows when a check has ended."""

    ids: list[str]
    error: BaseException | None = None  # None: the check returned
    skip_reason: str | None = None  # set when pytest skipped it
    informational: bool = False
    measurements: list[Measurement] = field(default_factory=list)
    transcripts: list[Transcript] = field(default_factory=list)  # every connection the check opened
    deaths: list[str] = field(default_factory=list)  # how the check's target processes exited, if they did
    rerun: str = ""
    seed: int | None = None
    harness_detail: str = ""  # pytest's own account of an unexpected error (its traceback)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    detail: str  # one line
    explanation: str = ""  # the text shown for anything that did not pass
    cause: str = ""  # how the target exited, when the failure followed from that
    failure: dict[str, Any] | None = None  # the Violation as data (report.explain.structured)


def judge(ending: CheckEnding) -> Judgement:
    error = ending.error
    if error is None:
        if ending.skip_reason is not None:
            return Judgement(Verdict.UNSUPPORTED, _unprefixed(ending.skip_reason))
        if ending.informational:
            return Judgement(Verdict.INFO, "; ".join(_measured(m) for m in ending.measurements))
        return Judgement(Verdict.PASS, "")
    unsupported = find(error, Unsupported)
    if find(error, Violation) is None and (unsupported is not None or ending.skip_reason is not None):
        return Judgement(Verdict.UNSUPPORTED, _unprefixed(str(unsupported or ending.skip_reason)))
    harness = find(error, (HarnessError, TargetNotReady))
    if harness is not None and find(error, Violation) is None:
        return Judgement(Verdict.ERROR, str(harness), f"harness error (not the target's fault): {harness}")
    violation = find(error, Violation)
    if violation is None:
        fault = find(error, TARGET_FAULTS)
        if fault is None:
            summary = f"{type(error).__name__}: {error}"
            text = f"harness error (not the target's fault): {summary}"
            return Judgement(Verdict.ERROR, summary, f"{text}\n\n{ending.harness_detail}".rstrip())
        violation = Violation(describe_fault(fault), transcripts=ending.transcripts)
    summary = violation.summary
    if ending.deaths:
        # The closed port, the reset, the silence: all follow from this.
        summary = f"{ending.deaths[0].splitlines()[0]} (then: {summary})"
        violation.context = [*ending.deaths, *violation.context]
    specs = [requirements.get(i) for i in ending.ids]
    explanation = explain(violation, specs, ending.rerun, ending.seed)
    return Judgement(
        verdict_for_violation(ending.ids), summary, explanation, "\n".join(ending.deaths), structured(violation)
    )


def find(error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The exception of ``kinds`` that was raised: the error itself, a member
    of an exception group, or an explicit cause (``raise ... from``). The
    implicit context is not followed: a HarnessError raised while handling a
    refused connection is still the harness's problem."""
    if isinstance(error, kinds):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = find(inner, kinds)
            if found is not None:
                return found
    cause = error.__cause__
    return find(cause, kinds) if cause is not None and cause is not error else None


def describe_fault(fault: BaseException) -> str:
    if isinstance(fault, ConnectionRefusedError):
        return "the target refused the connection (nothing listening, or the backlog overflowed)"
    if isinstance(fault, ConnectionResetError):
        return "the target reset the connection (RST)"
    if isinstance(fault, BrokenPipeError):
        return "the target closed the connection while the suite was still sending"
    if isinstance(fault, (WireTimeout, TimeoutError)):
        return "the target did not answer before the deadline"
    return f"{type(fault).__name__}: {fault}"


def _measured(m: Measurement) -> str:
    return f"{m.name} = {m.value:g} {m.unit}{f' ({m.note})' if m.note else ''}"


def _unprefixed(reason: str) -> str:
    return reason.removeprefix("Skipped: ").removeprefix("UNSUPPORTED: ")
