"""The Docker side of one run: images, the run's networks, its containers.

The controller (the only process under pytest-xdist that does set-up) builds
the images and creates the networks; workers attach to them by name and only
start and remove their own containers, named by worker id.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from . import engine as docker_engine
from .images import Base, Log, build_server_image, image_facts


@dataclass
class DockerEnvironment:
    engine: Any
    run_id: str
    network: str  # a user-defined bridge: containers are reached by their IP on it
    internal_network: str  # no route out: unassigned addresses in it are unreachable
    images: dict[str, str]  # base key -> reference-server image
    facts: dict[str, dict[str, str]] = field(default_factory=dict)  # base key -> python/openssl
    owner: bool = False  # this process created the networks and sweeps at the end
    _names: Any = field(default_factory=itertools.count)

    @classmethod
    def create(cls, bases: list[Base], log: Log = print) -> DockerEnvironment:
        engine = docker_engine.client()
        docker_engine.sweep(engine)  # leftovers of runs whose owner is gone
        run_id = docker_engine.new_run_id()
        labels = docker_engine.labels(run_id)
        network = engine.networks.create(f"sockspec-{run_id}", driver="bridge", labels=labels)
        internal = engine.networks.create(f"sockspec-{run_id}-internal", driver="bridge", internal=True, labels=labels)
        environment = cls(engine, run_id, network.name, internal.name, {}, owner=True)
        try:
            for base in bases:
                environment.images[base.key] = build_server_image(engine, base, log)
                environment.facts[base.key] = image_facts(engine, environment.images[base.key], labels)
        except BaseException:
            environment.close()
            raise
        return environment

    def handover(self) -> dict[str, Any]:
        """What a worker needs to attach (sent through xdist's workerinput)."""
        return {
            "run_id": self.run_id,
            "network": self.network,
            "internal_network": self.internal_network,
            "images": self.images,
            "facts": self.facts,
        }

    @classmethod
    def attach(cls, handover: dict[str, Any]) -> DockerEnvironment:
        return cls(docker_engine.client(), **handover)

    def container_name(self) -> str:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        return f"sockspec-{self.run_id}-{worker}-{next(self._names)}"

    def labels(self) -> dict[str, str]:
        return docker_engine.labels(self.run_id)

    def close(self) -> None:
        if self.owner:
            docker_engine.sweep(self.engine, self.run_id)
