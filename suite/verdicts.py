"""Verdicts, from best to worst, and how several become one."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    PASS = "PASS"
    INFO = "INFO"  # a measurement; never a failure
    UNSUPPORTED = "UNSUPPORTED"  # an optional feature the target does not declare
    NON_STRICT = "NON-STRICT"  # a SHOULD is broken
    FAIL = "FAIL"  # a MUST is broken
    ERROR = "ERROR"  # the harness or the set-up failed: not the target's fault

    @property
    def rank(self) -> int:
        return _RANK[self]

    def fails_run(self, strict: bool) -> bool:
        return self in (Verdict.FAIL, Verdict.ERROR) or (strict and self is Verdict.NON_STRICT)


_RANK = {verdict: rank for rank, verdict in enumerate(Verdict)}


def worst(verdicts: list[Verdict]) -> Verdict:
    """A requirement covered by several checks takes the worst of their verdicts.

    UNSUPPORTED only wins over PASS/INFO; a real failure elsewhere still shows."""
    return max(verdicts, key=lambda v: v.rank) if verdicts else Verdict.PASS
