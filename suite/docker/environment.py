"""The Docker side of one run: images, the run's networks, its containers.

The controller (the only process under pytest-xdist that does set-up) builds
the images, creates the networks and starts the DNS server for client
scenarios; workers attach to them by name and only start and remove their own
containers, named by worker id.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.types import IPAMConfig, IPAMPool

from ..clients.zone import AddressPlan
from . import engine as docker_engine
from .images import (
    Base,
    Log,
    build_client_image,
    build_dns_image,
    build_server_image,
    build_user_image,
    ensure_base,
    image_facts,
)

DNS_READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class UserTarget:
    """A user's --cmd to run in an image: the base's own (the working directory
    mounted), or one built from their Dockerfile on the base."""

    name: str
    base: Base
    dockerfile: Path | None = None


@dataclass
class DockerEnvironment:
    engine: Any
    run_id: str
    network: str  # a user-defined bridge: containers are reached by their IP on it
    internal_network: str  # no route out: unassigned addresses in it are unreachable
    images: dict[str, str]  # base key -> reference-server image
    facts: dict[str, dict[str, str]] = field(default_factory=dict)  # base key (client@key) -> python/openssl
    client_images: dict[str, str] = field(default_factory=dict)  # base key -> reference-client image
    user_images: dict[str, str] = field(default_factory=dict)  # target name -> the image its --cmd runs in
    plan: AddressPlan | None = None  # the internal network's addresses
    dns: bool = False  # the DNS server answers at plan.dns
    ipv6: str = ""  # why IPv6 is unusable on the internal network ("" when it works)
    owner: bool = False  # this process created the networks and sweeps at the end
    _names: Any = field(default_factory=itertools.count)

    @classmethod
    def create(
        cls,
        bases: list[Base],
        log: Log = print,
        *,
        client_bases: list[Base] | None = None,
        dns_base: Base | None = None,
        user_targets: list[UserTarget] | None = None,
    ) -> DockerEnvironment:
        engine = docker_engine.client()
        docker_engine.sweep(engine)  # leftovers of runs whose owner is gone
        run_id = docker_engine.new_run_id()
        labels = docker_engine.labels(run_id)
        network = engine.networks.create(f"sockspec-{run_id}", driver="bridge", labels=labels)
        environment = cls(engine, run_id, network.name, "", {}, owner=True)
        try:
            environment.plan = _create_internal(engine, f"sockspec-{run_id}-internal", labels)
            environment.internal_network = f"sockspec-{run_id}-internal"
            for base in bases:
                environment.images[base.key] = build_server_image(engine, base, log)
                environment.facts[base.key] = image_facts(engine, environment.images[base.key], labels)
            for user in user_targets or []:
                if user.dockerfile is not None:
                    image = build_user_image(engine, user.base, user.dockerfile, user.name, log)
                else:
                    image = ensure_base(engine, user.base, log)
                environment.user_images[user.name] = image
                environment.facts[user.name] = image_facts(engine, image, labels)
            for base in client_bases or []:
                environment.client_images[base.key] = build_client_image(engine, base, log)
                environment.facts[f"client@{base.key}"] = image_facts(
                    engine, environment.client_images[base.key], labels
                )
            if dns_base is not None:
                environment._start_dns(build_dns_image(engine, dns_base, log), log)
        except BaseException:
            environment.close()
            raise
        return environment

    def _start_dns(self, image: str, log: Log) -> None:
        assert self.plan is not None
        container = self.engine.containers.create(
            image,
            [json.dumps(self.plan.zone())],
            labels=self.labels(),
            name=self.dns_container_name(),
            network=self.internal_network,
            networking_config={
                self.internal_network: self.engine.api.create_endpoint_config(ipv4_address=self.plan.dns)
            },
        )
        container.start()
        deadline = time.monotonic() + DNS_READY_TIMEOUT
        while b"READY" not in container.logs(stdout=True, stderr=False):
            container.reload()
            if container.status != "running" or time.monotonic() > deadline:
                output = container.logs()[-2000:].decode(errors="replace")
                raise RuntimeError(f"the DNS server did not start ({container.status}): {output}")
            threading.Event().wait(0.05)
        self.dns = True
        self.ipv6 = _wait_for_gateway6(self.plan)
        log(f"DNS server for {len(self.plan.zone())} names at {self.plan.dns} on {self.internal_network}")

    def handover(self) -> dict[str, Any]:
        """What a worker needs to attach (sent through xdist's workerinput)."""
        return {
            "run_id": self.run_id,
            "network": self.network,
            "internal_network": self.internal_network,
            "images": self.images,
            "facts": self.facts,
            "client_images": self.client_images,
            "user_images": self.user_images,
            "plan": None if self.plan is None else [self.plan.subnet, self.plan.subnet6],
            "dns": self.dns,
            "ipv6": self.ipv6,
        }

    @classmethod
    def attach(cls, handover: dict[str, Any]) -> DockerEnvironment:
        handover = dict(handover)
        plan = handover.pop("plan")
        return cls(docker_engine.client(), **handover, plan=None if plan is None else AddressPlan(*plan))

    def dns_container_name(self) -> str:
        return f"sockspec-{self.run_id}-dns"

    def container_name(self) -> str:
        return f"sockspec-{self.run_id}-{worker_id()}-{next(self._names)}"

    def labels(self) -> dict[str, str]:
        return docker_engine.labels(self.run_id)

    def close(self) -> None:
        if self.owner:
            docker_engine.sweep(self.engine, self.run_id)


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _taken_subnets(engine: Any) -> list[ipaddress.IPv4Network]:
    taken = []
    for network in engine.networks.list():
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                subnet = ipaddress.ip_network(pool["Subnet"], strict=False)
                if subnet.version == 4:
                    taken.append(subnet)
    with contextlib.suppress(OSError), open("/proc/net/route", encoding="ascii") as routes:
        for line in routes.readlines()[1:]:
            fields = line.split()
            destination = socket.inet_ntoa(int(fields[1], 16).to_bytes(4, "little"))
            mask = socket.inet_ntoa(int(fields[7], 16).to_bytes(4, "little"))
            if destination != "0.0.0.0":
                taken.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return taken


def _create_internal(engine: Any, name: str, labels: dict[str, str]) -> AddressPlan:
    """The internal network, on a /24 no other network or route uses, with an
    IPv6 /64 from a random unique-local prefix (RFC 4193)."""
    taken = _taken_subnets(engine)
    candidates = [ipaddress.IPv4Network(f"10.{second}.{third}.0/24") for second in (47, 147) for third in range(256)]
    random.shuffle(candidates)
    for subnet in candidates[:64]:
        if any(subnet.overlaps(other) for other in taken):
            continue
        plan = AddressPlan(str(subnet), f"fd5c:{random.randrange(1 << 16):x}:{random.randrange(1 << 16):x}::/64")
        pools = [
            IPAMPool(subnet=plan.subnet, iprange=plan.dynamic_range, gateway=plan.gateway),
            IPAMPool(subnet=plan.subnet6, gateway=plan.gateway6),
        ]
        try:
            engine.networks.create(
                name,
                driver="bridge",
                internal=True,
                enable_ipv6=True,
                ipam=IPAMConfig(pool_configs=pools),
                labels=labels,
            )
        except Exception as error:
            if "overlap" in str(error).lower():
                continue
            raise
        return plan
    raise RuntimeError("no free /24 for the internal network among 64 candidates")


def _wait_for_gateway6(plan: AddressPlan, timeout: float = 10.0) -> str:
    """The bridge's IPv6 address is usable once duplicate address detection is
    done; until then it cannot be bound. Returns why it never became usable."""
    assert plan.gateway6 is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind((plan.gateway6, 0))
            return ""
        except OSError as error:
            if time.monotonic() > deadline:
                return f"this machine never made {plan.gateway6} usable: {error}"
        threading.Event().wait(0.1)
