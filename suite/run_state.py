"""What the plugin and its fixtures share about the run, as this process
sees it (the controller, or one xdist worker), and how a check names its
requirements and target."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from . import profiles
from .configuration import RunSettings
from .docker.environment import DockerEnvironment


@dataclasses.dataclass
class RunState:
    """The run as this process sees it (the controller, or one xdist worker)."""

    settings: RunSettings
    docker: DockerEnvironment | None = None
    docker_reason: str = ""  # why there is no Docker for the DNS scenarios
    groups_dir: Path | None = None  # the controller's record of every process group (reaper)
    scratch: Path | None = None  # Hypothesis's files for this run, removed at its end
    previous_hypothesis: tuple[Any, Any] | None = None


STATE = pytest.StashKey[RunState]()


def state_of(config: pytest.Config) -> RunState:
    return config.stash[STATE]


def marked_ids(item: pytest.Item) -> list[str]:
    """Every requirement a check is marked with, whatever its profile."""
    return [i for mark in item.iter_markers("requirement") for i in mark.args]


def ids_of(item: pytest.Item) -> list[str]:
    """The requirements a check judges in this run: those of the run's profile
    (a check written against a Dialect names one requirement per profile)."""
    state = item.config.stash.get(STATE, None)
    if state is None:
        return marked_ids(item)
    profile = profiles.named(state.settings.profile)
    return [i for i in marked_ids(item) if profile.owns(i)]


def is_check(item: pytest.Item) -> bool:
    return bool(ids_of(item))


def target_of(item: pytest.Item) -> str | None:
    """The target or client a check is parametrised with."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    for fixture in ("target_name", "client_name"):
        if isinstance(params.get(fixture), str):
            return str(params[fixture])
    return None
