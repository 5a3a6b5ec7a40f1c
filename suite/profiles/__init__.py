"""The protocols the suite can judge, each a profile: CloudHash/1 (the
default, PROTOCOL.md) and RESP2 (Redis-compatible servers, PROTOCOL-RESP2.md).

A profile here is data only: its name, its spec file, the prefix of its
requirement IDs and its optional features (the areas and their order are
the spec's own, read by suite.requirements; suite.report.roots orders them).
How a profile speaks (its codec, its way to say PING or a blocking request,
its error grammar) lives in ``suite.profiles.dialects``; this module imports
nothing from the suite, so that ``suite.requirements`` can stand on it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT", "PROFILES", "Profile", "named", "of_requirement"]


@dataclass(frozen=True)
class Profile:
    name: str  # what --profile takes
    title: str  # for people: "CloudHash/1"
    spec_file: str  # beside the suite, in the repository's root
    prefix: str  # of every requirement ID: "CH" in CH-FRAME-3
    optional_features: frozenset[str]  # a target declares which it offers; `full` needs them all

    def owns(self, requirement_id: str) -> bool:
        return requirement_id.upper().startswith(self.prefix + "-")


CLOUDHASH = Profile(
    name="cloudhash",
    title="CloudHash/1",
    spec_file="PROTOCOL.md",
    prefix="CH",
    optional_features=frozenset({"framed", "tls", "starttls", "urgent"}),
)
RESP2 = Profile(
    name="resp2",
    title="RESP2 (Redis-compatible)",
    spec_file="PROTOCOL-RESP2.md",
    prefix="R2",
    # Urgent data is core here: a server that reads with SO_OOBINLINE off
    # never sees the byte, which is what Redis does by doing nothing.
    optional_features=frozenset({"tls"}),
)
PROFILES: dict[str, Profile] = {profile.name: profile for profile in (CLOUDHASH, RESP2)}
DEFAULT = CLOUDHASH.name


def named(name: str) -> Profile:
    """The profile --profile names; ValueError with the known names otherwise."""
    profile = PROFILES.get(name.strip().lower())
    if profile is None:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    return profile


def of_requirement(requirement_id: str) -> Profile:
    """The profile whose spec a requirement ID belongs to, by its prefix."""
    for profile in PROFILES.values():
        if profile.owns(requirement_id):
            return profile
    raise KeyError(f"{requirement_id} belongs to no profile (known prefixes: {', '.join(PROFILE_PREFIXES)})")


PROFILE_PREFIXES = tuple(profile.prefix for profile in PROFILES.values())
