"""The order in which to read, and fix, a run's failures.

The areas of PROTOCOL.md come in the spec's order, and before them a handful of
prerequisites: requirements that nearly every other check stands on, so that
when one of them fails, many later FAILs may be nothing but its echo. The
same order sorts the summary, runs the checks area by area
(``--area-by-area``) and names the areas the progress display counts.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ..verdicts import Verdict

if TYPE_CHECKING:
    from .results import RequirementResult

__all__ = [
    "AREA_ORDER",
    "PREREQUISITES",
    "area_of",
    "area_rank",
    "blamed_on",
    "fix_first",
    "may_follow_from",
    "spec_order",
]

# The sections of PROTOCOL.md, in the order the spec presents them.
AREA_ORDER: tuple[str, ...] = (
    "FRAME",
    "CMD",
    "ERR",
    "STORE",
    "TIMEOUT",
    "CONC",
    "LIMIT",
    "URGENT",
    "TLS",
    "LIFE",
    "ROBUST",
    "CLIENT",
)

# The requirements other checks stand on, in the order to fix them, each with
# the areas (or requirements) whose checks lean on it ("*": every server area)
# and why. Outside the pipelining and segmentation checks a check sends one
# request and reads its reply before the next, so pipelining is a prerequisite
# of FRAME and of the few requirements that are about pipelined requests.
PIPELINED = (
    "FRAME",
    "CH-CONC-3",
    "CH-TIMEOUT-6",
    "CH-URGENT-4",
    "CH-LIFE-7",
    "CH-LIFE-8",
    "CH-ROBUST-1",
    "CH-ROBUST-3",
)
PREREQUISITES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("CH-FRAME-1", ("*",), "a server that sends bytes nobody asked for shifts every later reply out of place"),
    ("CH-FRAME-3", ("*",), "line framing: the checks end their requests with CRLF, and the CR must go with the LF"),
    ("CH-FRAME-2", ("FRAME",), "line framing: a bare LF ends a request, as several FRAME checks send it"),
    ("CH-CMD-2", ("*",), "PING is the suite's readiness probe and the simplest request of many checks"),
    ("CH-ERR-1", ("FRAME", "CMD", "ERR"), "every check that expects an error reply reads it in this fixed form"),
    ("CH-FRAME-18", PIPELINED, "TCP splits and merges writes: a server that reads one request per segment"),
    ("CH-FRAME-17", PIPELINED, "these checks send several requests at once and read the replies in order"),
    ("CH-CLIENT-11", ("CLIENT",), "every client scenario reads the replies the client prints and its exit status"),
    # RESP2 (PROTOCOL-RESP2.md): every check sends multibulk requests and reads their replies.
    ("R2-FRAME-1", ("*",), "multibulk requests: every RESP2 check sends its requests so and reads typed replies"),
    ("R2-FRAME-4", ("FRAME", "R2-CONC-1"), "these checks send several requests at once and read the replies in order"),
    ("R2-CLIENT-1", ("CLIENT",), "every client scenario reads the reply the client prints and its exit status"),
)
_PREREQUISITE_IDS = [requirement_id for requirement_id, _, _ in PREREQUISITES]
_SCOPE = {requirement_id: areas for requirement_id, areas, _ in PREREQUISITES}


def area_rank(area: str) -> int:
    """An area's place in the spec; an unknown area goes last."""
    return AREA_ORDER.index(area) if area in AREA_ORDER else len(AREA_ORDER)


def spec_order(requirement_id: str) -> tuple[int, int]:
    """Sorts requirement IDs as the spec lists them: CH-FRAME-2 before CH-FRAME-10 before CH-CMD-1."""
    _, area, number = requirement_id.split("-")
    return area_rank(area), int(number)


def area_of(nodeid: str) -> str:
    """The area a check belongs to, from its module: test_frame.py is FRAME,
    every test_client_*.py is CLIENT; anything else is named by its module."""
    module = PurePosixPath(nodeid.split("::", 1)[0]).stem.removeprefix("test_")
    if module.startswith("client"):
        return "CLIENT"
    return module.upper()


def _fails(result: RequirementResult) -> bool:
    return result.verdict is Verdict.FAIL


def _kind(requirement_id: str) -> str:
    return "client" if "-CLIENT-" in requirement_id else "server"


def _profile(requirement_id: str) -> str:
    return requirement_id.split("-", 1)[0]


def may_follow_from(result: RequirementResult, results: list[RequirementResult]) -> list[str]:
    """The failing prerequisites that a FAIL may be only the echo of: those
    declared before it (for a prerequisite) or those whose scope covers its
    area (for the rest)."""
    if not _fails(result):
        return []
    failing = {r.id for r in results if _fails(r) and r.id != result.id}
    if result.id in _PREREQUISITE_IDS:
        candidates = _PREREQUISITE_IDS[: _PREREQUISITE_IDS.index(result.id)]
    else:
        candidates = _PREREQUISITE_IDS
    return [i for i in candidates if i in failing and _covers(i, result.id)]


def _covers(prerequisite: str, requirement_id: str) -> bool:
    if _kind(prerequisite) != _kind(requirement_id) or _profile(prerequisite) != _profile(requirement_id):
        return False
    scope = _SCOPE[prerequisite]
    return "*" in scope or requirement_id.split("-")[1] in scope or requirement_id in scope


def blamed_on(result: RequirementResult, results: list[RequirementResult]) -> str | None:
    """The first failing prerequisite this FAIL may follow from, if any."""
    causes = may_follow_from(result, results)
    return causes[0] if causes else None


def fix_first(results: list[RequirementResult]) -> list[RequirementResult]:
    """The FAILs to fix first: the failing prerequisites in their declared
    order, then the first FAIL of each area in the spec's order."""
    failing = [r for r in results if _fails(r)]
    by_id = {r.id: r for r in failing}
    chosen = [by_id[i] for i in _PREREQUISITE_IDS if i in by_id]
    areas_seen: set[str] = set()
    for result in sorted(failing, key=lambda r: spec_order(r.id)):
        area = result.id.split("-")[1]
        if area in areas_seen:
            continue
        areas_seen.add(area)
        if result not in chosen:
            chosen.append(result)
    return chosen
