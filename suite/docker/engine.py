"""The Docker engine: connecting, labelling, and sweeping.

Every container and network the suite creates carries PROJECT_LABEL, the run
id and the pid of the process that owns the run. A sweep removes the objects
of a given run, or of any run whose owner is no longer alive, so that two
runs side by side never remove each other's containers.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

import docker

PROJECT_LABEL = "org.sockspec.project"
PROJECT = "sockspec"
RUN_LABEL = "org.sockspec.run"
OWNER_LABEL = "org.sockspec.owner-pid"


class DockerUnavailable(Exception):
    """No engine to talk to; Docker checks are skipped with this reason."""


def client(timeout: int = 120) -> Any:
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
    except Exception as error:
        raise DockerUnavailable(f"no Docker engine answers ({error})") from None
    return engine


def is_remote() -> str:
    """The remote engine's address when DOCKER_HOST names one (tcp://, ssh://), or "" for this machine's."""
    host = os.environ.get("DOCKER_HOST", "")
    return host if host and not host.startswith(("unix://", "npipe://")) else ""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def labels(run_id: str, **extra: str) -> dict[str, str]:
    return {PROJECT_LABEL: PROJECT, RUN_LABEL: run_id, OWNER_LABEL: str(os.getpid()), **extra}


def _owner_alive(labels_of: dict[str, str]) -> bool:
    pid = labels_of.get(OWNER_LABEL, "")
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(engine: Any, run_id: str | None = None) -> tuple[int, int]:
    """Remove the containers and networks of ``run_id`` (or, with None, of
    every run whose owner process is gone). Returns (containers, networks).

    Only objects a run labelled are touched: an image build's intermediate
    containers inherit the project label from the base image but carry no
    run label, and removing them would break a build in progress."""
    selector = {"label": [f"{PROJECT_LABEL}={PROJECT}", RUN_LABEL]}
    removed_containers = removed_networks = 0
    for container in engine.containers.list(all=True, filters=selector):
        mine = container.labels.get(RUN_LABEL) == run_id if run_id else not _owner_alive(container.labels)
        if mine:
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed_containers += 1
    for network in engine.networks.list(filters=selector):
        network_labels = network.attrs.get("Labels") or {}
        mine = network_labels.get(RUN_LABEL) == run_id if run_id else not _owner_alive(network_labels)
        if mine:
            with contextlib.suppress(Exception):
                network.remove()
                removed_networks += 1
    return removed_containers, removed_networks


def leftovers(engine: Any) -> list[str]:
    """Every project container and network still there (for self-tests)."""
    selector = {"label": [f"{PROJECT_LABEL}={PROJECT}"]}
    found = [f"container {c.name}" for c in engine.containers.list(all=True, filters=selector)]
    found += [f"network {n.name}" for n in engine.networks.list(filters=selector)]
    return found
