"""The requirements of each profile's spec (PROTOCOL.md for CloudHash/1,
PROTOCOL-RESP2.md for RESP2), read from the spec itself so that the suite
and the spec can never disagree about an ID, a level or a title.

``load()`` is CloudHash/1's, as it always was; ``load(profile="resp2")``
another profile's; ``get(ID)`` finds any profile's requirement by its prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import profiles

HEADING = re.compile(r"^### ((CH|R2)-([A-Z]+)-(\d+)) \((MUST|SHOULD)\) — (.+?)\s*$")
FEATURE = re.compile(r"^Feature: (.+)$")
APPLIES = re.compile(r"^Applies when: (.+)$")
OPTIONAL_FEATURES = profiles.PROFILES[profiles.DEFAULT].optional_features  # CloudHash/1's


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


def spec_path(profile: str = profiles.DEFAULT) -> Path:
    name = profiles.named(profile).spec_file
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / name, here / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} not found next to the suite")


@cache
def load(path: Path | None = None, profile: str = profiles.DEFAULT) -> dict[str, Requirement]:
    """The requirements of one profile's spec (of ``path``, if given), in the spec's order."""
    spec = profiles.named(profile)
    lines = (path or spec_path(profile)).read_text(encoding="utf-8").splitlines()
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
            if match.group(2) != spec.prefix:
                raise ValueError(f"{match.group(1)}: the {spec.name} spec's IDs start with {spec.prefix}-")
            current = {
                "id": match.group(1),
                "area": match.group(3),
                "number": int(match.group(4)),
                "level": match.group(5),
                "title": match.group(6),
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
            unknown = [n for n in names if n not in spec.optional_features]
            if unknown:
                raise ValueError(f"{current['id']}: unknown feature {unknown[0]!r} in {spec.spec_file}")
            current["features"] = names
            continue
        applies = APPLIES.match(line.strip())
        if applies:
            current["applies_when"] = applies.group(1)
            continue
        body.append(line)
    finish()
    return found


def load_all() -> dict[str, Requirement]:
    """Every profile's requirements (their IDs never collide: each profile has its prefix)."""
    found: dict[str, Requirement] = {}
    for name in profiles.PROFILES:
        found.update(load(profile=name))
    return found


def get(requirement_id: str) -> Requirement:
    """Any profile's requirement, found by its ID's prefix."""
    try:
        profile = profiles.of_requirement(requirement_id)
    except KeyError:
        raise KeyError(f"{requirement_id} is not a requirement of PROTOCOL.md") from None
    requirements = load(profile=profile.name)
    if requirement_id not in requirements:
        raise KeyError(f"{requirement_id} is not a requirement of {profile.spec_file}")
    return requirements[requirement_id]
