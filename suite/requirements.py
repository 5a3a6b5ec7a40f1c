"""The requirements of PROTOCOL.md, read from the spec itself so that the
suite and the spec can never disagree about an ID, a level or a title."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HEADING = re.compile(r"^### (CH-([A-Z]+)-(\d+)) \((MUST|SHOULD)\) — (.+?)\s*$")
FEATURE = re.compile(r"^Feature: (.+)$")
APPLIES = re.compile(r"^Applies when: (.+)$")
OPTIONAL_FEATURES = frozenset({"framed", "tls", "starttls", "urgent"})


@dataclass(frozen=True)
class Requirement:
    id: str
    area: str
    number: int
    level: str  # MUST or SHOULD
    title: str
    text: str  # the statement, as written in the spec
    features: tuple[str, ...]  # the optional features it needs (all of them); () for core
    applies_when: str | None  # a condition on the declared configuration, as written

    @property
    def feature(self) -> str | None:
        """The first optional feature it belongs to (None for core)."""
        return self.features[0] if self.features else None


def spec_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "PROTOCOL.md", here / "PROTOCOL.md"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("PROTOCOL.md not found next to the suite")


@cache
def load(path: Path | None = None) -> dict[str, Requirement]:
    lines = (path or spec_path()).read_text(encoding="utf-8").splitlines()
    found: dict[str, Requirement] = {}
    current: dict[str, object] | None = None
    body: list[str] = []

    def finish() -> None:
        if current is None:
            return
        text = "\n".join(line for line in body if not line.startswith("*Rationale") and line.strip() != "---").strip()
        found[str(current["id"])] = Requirement(text=text, **current)  # type: ignore[arg-type]

    for line in lines:
        match = HEADING.match(line)
        if match:
            finish()
            body = []
            current = {
                "id": match.group(1),
                "area": match.group(2),
                "number": int(match.group(3)),
                "level": match.group(4),
                "title": match.group(5),
                "features": (),
                "applies_when": None,
            }
            continue
        if current is None:
            continue
        if line.startswith("#"):
            finish()
            current = None
            continue
        feature = FEATURE.match(line.strip())
        if feature:
            names = tuple(n.strip().strip("`") for n in feature.group(1).split(","))
            unknown = [n for n in names if n not in OPTIONAL_FEATURES]
            if unknown:
                raise ValueError(f"{current['id']}: unknown feature {unknown[0]!r} in PROTOCOL.md")
            current["features"] = names
            continue
        applies = APPLIES.match(line.strip())
        if applies:
            current["applies_when"] = applies.group(1)
            continue
        body.append(line)
    finish()
    return found


def get(requirement_id: str) -> Requirement:
    requirements = load()
    if requirement_id not in requirements:
        raise KeyError(f"{requirement_id} is not a requirement of PROTOCOL.md")
    return requirements[requirement_id]
