"""Where targets come from: a command the suite starts (``--cmd``, our
reference servers) or an address that is already serving (``--address``)."""

from __future__ import annotations

import contextlib
import shlex
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..certs import CertificateFiles
from ..probe import HarnessError, Unsupported
from ..wire import Wire, WireTimeout
from .base import Declared, Target, TlsTrust
from .container import CERTS_MOUNT, ContainerProcess
from .process import Endpoint, ServerProcess, TargetNotReady, free_ports

PLACEHOLDERS = ("port", "tls_port", "cert", "key", "ca", "idle")
SHARED_IDLE = 60.0  # long enough that no ordinary check meets it


@dataclass
class TargetSpec:
    name: str
    template: str | None = None  # a command line with {placeholders}
    address: Endpoint | None = None
    ca: Path | None = None  # for --address: the CA that signed the target's certificate
    hostname: str = "localhost"
    image: str | None = None  # a base key (docker/bases.toml): our reference-server image on it
    arch: str | None = None  # with image: the architecture to run

    @property
    def controllable(self) -> bool:
        return self.template is not None or self.image is not None

    def describe(self) -> str:
        if self.image is not None:
            return f"--image {self.image}:{self.arch}"
        if self.template is not None:
            return f"--cmd {shlex.quote(self.template)}"
        assert self.address is not None
        tls = f",{self.address.tls_port}" if self.address.tls_port else ""
        return f"--address {self.address.host}:{self.address.port}{tls}"


# Limits small enough that the flood and overflow checks stay quick on two cores.
REFERENCE_MAX_CONNECTIONS = 32
REFERENCE_WORKERS = 8  # preforking and thread-pool


def reference_sizing(arch: str) -> list[str]:
    if arch in ("preforking", "thread-pool"):
        return ["--concurrency", str(REFERENCE_WORKERS)]
    return ["--max-connections", str(REFERENCE_MAX_CONNECTIONS)]


def reference_template(arch: str, program: str | None = None) -> str:
    """The --cmd template for a reference server (or for ``program``, which
    takes the same flags, such as a mutant of one)."""
    program = program or f"{shlex.quote(sys.executable)} -m reference_servers {arch}"
    flags = "--port {port} --tls-port {tls_port} --cert {cert} --key {key} --idle-timeout {idle}"
    return f"{program} {flags} {' '.join(reference_sizing(arch))}"


def container_command(arch: str, idle: float) -> list[str]:
    """The reference server's arguments inside its container (the image's entry point is the server)."""
    return [
        arch,
        *("--host", "0.0.0.0", "--port", "4481", "--tls-port", "4482"),
        *("--cert", f"{CERTS_MOUNT}/server.pem", "--key", f"{CERTS_MOUNT}/server.key"),
        *("--idle-timeout", f"{idle:g}", *reference_sizing(arch)),
    ]


def reference_spec(arch: str) -> TargetSpec:
    return TargetSpec(name=arch, template=reference_template(arch))


def parse_address(text: str) -> Endpoint:
    """HOST:PORT[,TLSPORT]; IPv6 hosts in brackets."""
    main, _, tls = text.partition(",")
    host, sep, port = main.rpartition(":")
    if not sep or not host or not port.isdigit() or (tls and not tls.isdigit()):
        raise ValueError(f"--address wants HOST:PORT[,TLSPORT], not {text!r}")
    return Endpoint(host.strip("[]"), int(port), int(tls) if tls else None)


def fill_template(template: str, values: dict[str, str]) -> list[str]:
    unknown = [
        name for _, name, _, _ in string.Formatter().parse(template) if name is not None and name not in PLACEHOLDERS
    ]
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} in --cmd; known: {', '.join(PLACEHOLDERS)}")
    return shlex.split(template.format(**values))


@dataclass
class TargetPool:
    specs: dict[str, TargetSpec]
    certs: CertificateFiles
    overrides: dict[str, str]
    timeout: float = 5.0
    ready_timeout: float = 15.0
    docker: Any = None  # a suite.docker.environment.DockerEnvironment, for --image targets
    _shared: dict[str, Target] = field(default_factory=dict)
    _failed: dict[str, str] = field(default_factory=dict)

    def shared(self, name: str) -> Target:
        """The instance most checks share (started once per run and worker)."""
        if name in self._failed:
            raise HarnessError(self._failed[name])
        if name not in self._shared:
            try:
                self._shared[name] = self._open(self.specs[name], SHARED_IDLE)
            except HarnessError as error:
                self._failed[name] = str(error)
                raise
        return self._shared[name]

    @contextlib.contextmanager
    def fresh(self, name: str, idle: float = SHARED_IDLE, why: str = "") -> Iterator[Target]:
        """A separate instance for a check that would disturb others."""
        spec = self.specs[name]
        self._require_control(spec, why)
        target = self._open(spec, idle)
        try:
            yield target
        finally:
            self._close(target)

    @contextlib.contextmanager
    def launched(self, name: str, idle: float = SHARED_IDLE) -> Iterator[tuple[Any, Endpoint]]:
        """A fresh instance, handed over as soon as it is ready (before the
        suite has sent it anything), with the process or container behind it.
        Raises TargetNotReady when it never announces itself."""
        spec = self.specs[name]
        self._require_control(spec, "it watches the server from its start")
        process, endpoint = self._launch(spec, idle)
        try:
            yield process, endpoint
        finally:
            process.kill()

    @staticmethod
    def _require_control(spec: TargetSpec, why: str) -> None:
        if not spec.controllable:
            raise Unsupported(
                f"this check needs a fresh server process ({why or 'it disturbs the server'}); "
                "point the suite at a command with --cmd (or --image) instead of --address"
            )

    def close(self) -> None:
        for target in self._shared.values():
            self._close(target)
        self._shared.clear()

    # ---- internals -----------------------------------------------------------

    def _open(self, spec: TargetSpec, idle: float) -> Target:
        if not spec.controllable:
            assert spec.address is not None
            trust = TlsTrust(spec.ca, spec.hostname)
            return self._with_info(Target(spec.name, spec.address, Declared({}), trust, timeout=self.timeout))
        try:
            process, endpoint = self._launch(spec, idle)
        except (TargetNotReady, OSError) as error:
            raise HarnessError(f"{spec.name}: the target did not become ready: {error}") from None
        trust = TlsTrust(self.certs.ca, "localhost")
        target = Target(spec.name, endpoint, Declared({}), trust, process=process, timeout=self.timeout)
        try:
            return self._with_info(target)
        except BaseException:
            self._close(target)
            raise

    def _launch(self, spec: TargetSpec, idle: float) -> tuple[Any, Endpoint]:
        if spec.image is not None:
            return self._launch_container(spec, idle)
        assert spec.template is not None
        for attempt in (1, 2):
            port, tls_port = free_ports(2)
            values = {
                "port": str(port),
                "tls_port": str(tls_port),
                "cert": str(self.certs.cert),
                "key": str(self.certs.key),
                "ca": str(self.certs.ca),
                "idle": f"{idle:g}",
            }
            process = ServerProcess(fill_template(spec.template, values))
            try:
                endpoint = process.start(timeout=self.ready_timeout, expect_port=("127.0.0.1", port))
            except TargetNotReady:
                process.kill()
                # Another program may have taken a port between choosing and binding: once more.
                if attempt == 1 and process.exited_early:
                    continue
                raise
            except BaseException:
                process.kill()
                raise
            if endpoint.tls_port is None and "{tls_port}" in spec.template:
                endpoint = Endpoint(endpoint.host, endpoint.port, tls_port)
            return process, endpoint
        raise AssertionError("unreachable")

    def _launch_container(self, spec: TargetSpec, idle: float) -> tuple[Any, Endpoint]:
        docker = self.docker
        if docker is None:
            raise HarnessError("an --image target needs a Docker engine, and none was set up")
        assert spec.image is not None and spec.arch is not None
        process = ContainerProcess(
            docker.engine,
            docker.images[spec.image],
            container_command(spec.arch, idle),
            network=docker.network,
            labels=docker.labels(),
            mounts={str(self.certs.cert.parent): CERTS_MOUNT},
            name=docker.container_name(),
        )
        try:
            endpoint = process.start(timeout=self.ready_timeout)
        except BaseException:
            process.kill()
            raise
        return process, endpoint

    def _with_info(self, target: Target) -> Target:
        try:
            with Wire.connect(target.endpoint.host, target.endpoint.port, timeout=self.timeout) as wire:
                # One request at a time: a server that mishandles pipelining must
                # still get its declaration read (its pipelining is judged elsewhere).
                wire.send(b"INFO\r\n", self.timeout)
                line = wire.read_line(self.timeout) or b""
                # QUIT, and wait for the server's close, so that this connection
                # no longer counts against the limit when the checks begin.
                wire.send(b"QUIT\r\n", self.timeout)
                wire.wait_for_end(self.timeout)
        except (OSError, WireTimeout) as error:
            raise HarnessError(f"{target.name}: cannot connect to {target.endpoint}: {error}") from None
        value = line[1:].rstrip(b"\r\n") if line.startswith(b"$") else b""
        target.declared = Declared.parse_info(value, self.overrides)
        return target

    def _close(self, target: Target) -> None:
        target.close_probes()
        if target.process is not None:
            target.process.kill()
