"""Where targets come from: a command the suite starts (``--cmd``, our
reference servers) or an address that is already serving (``--address``)."""

from __future__ import annotations

import contextlib
import shlex
import socket
import string
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference_servers.cli import load as load_architecture

from ..certs import CertificateFiles
from ..escape import escape
from ..probe import HarnessError, Unsupported
from ..profiles import DEFAULT as DEFAULT_PROFILE
from ..profiles import declaration
from ..wire import Ending, Wire, WireTimeout
from .base import Declared, Target, TlsTrust
from .container import CERTS_MOUNT, ContainerProcess
from .process import Endpoint, ServerProcess, TargetNotReady, free_ports

PLACEHOLDERS = ("port", "tls_port", "cert", "key", "ca", "idle", "host", "maxclients")
USER_WORKDIR = "/work"  # where a --cmd run in an image finds its working directory (read-only)
SHARED_IDLE = 60.0  # long enough that no ordinary check meets it
SHARED_MAXCLIENTS = 64  # {maxclients} of the shared instance: room for every check's connections
TLS_LISTEN_GRACE = 2.0  # RESP2: seconds for a template's {tls_port} to accept once {port} does


@dataclass
class TargetSpec:
    name: str
    template: str | None = None  # a command line with {placeholders}
    address: Endpoint | None = None
    ca: Path | None = None  # for --address: the CA that signed the target's certificate
    hostname: str = "localhost"
    image: str | None = None  # a base key (docker/bases.toml): our reference-server image on it
    arch: str | None = None  # with image: the architecture to run
    reference: bool = False  # one of our reference servers, started here (--reference)
    workdir: Path | None = None  # with image and template (--cmd-image): mounted read-only as the working directory
    dockerfile: Path | None = None  # with image and template: the server's own image is built from it on the base

    @property
    def controllable(self) -> bool:
        return self.template is not None or self.image is not None

    def describe(self) -> str:
        if self.image is not None and self.template is not None:
            built = f" --dockerfile {shlex.quote(str(self.dockerfile))}" if self.dockerfile else ""
            return f"--cmd {shlex.quote(self.template)} --cmd-image {self.image}{built}"
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


def reference_sizing(arch: str, profile: str = DEFAULT_PROFILE, maxclients: str = "{maxclients}") -> list[str]:
    """Under resp2, an architecture that refuses the connection past its limit
    takes ``maxclients`` as that limit; one that queues it has no maxclients."""
    if arch in ("preforking", "thread-pool"):
        return ["--concurrency", str(REFERENCE_WORKERS)]
    if profile != DEFAULT_PROFILE and load_architecture(arch).OVERFLOW == "busy":
        return ["--max-connections", maxclients]
    return ["--max-connections", str(REFERENCE_MAX_CONNECTIONS)]


def _protocol_flags(profile: str) -> list[str]:
    return [] if profile == DEFAULT_PROFILE else ["--protocol", "resp"]


def reference_template(arch: str, program: str | None = None, profile: str = DEFAULT_PROFILE) -> str:
    """The --cmd template for a reference server (or for ``program``, which
    takes the same flags, such as a mutant of one), speaking ``profile``."""
    program = program or f"{shlex.quote(sys.executable)} -m reference_servers {arch}"
    flags = "--port {port} --tls-port {tls_port} --cert {cert} --key {key} --idle-timeout {idle}"
    return " ".join([program, *_protocol_flags(profile), flags, *reference_sizing(arch, profile)])


def container_command(arch: str, idle: float, profile: str = DEFAULT_PROFILE, maxclients: int = 0) -> list[str]:
    """The reference server's arguments inside its container (the image's entry point is the server)."""
    return [
        arch,
        *_protocol_flags(profile),
        *("--host", "0.0.0.0", "--port", "4481", "--tls-port", "4482"),
        *("--cert", f"{CERTS_MOUNT}/server.pem", "--key", f"{CERTS_MOUNT}/server.key"),
        *("--idle-timeout", f"{idle:g}", *reference_sizing(arch, profile, str(maxclients))),
    ]


def reference_spec(arch: str, profile: str = DEFAULT_PROFILE) -> TargetSpec:
    return TargetSpec(name=arch, template=reference_template(arch, profile=profile), reference=True)


def parse_address(text: str) -> Endpoint:
    """HOST:PORT[,TLSPORT]; IPv6 hosts in brackets."""
    main, _, tls = text.partition(",")
    host, sep, port = main.rpartition(":")
    if not sep or not host or not port.isdigit() or (tls and not tls.isdigit()):
        raise ValueError(f"--address wants HOST:PORT[,TLSPORT], not {text!r}")
    return Endpoint(host.strip("[]"), int(port), int(tls) if tls else None)


def _reachable_in_container(endpoint: Endpoint, timeout: float) -> None:
    """A server in a container is dialled at the container's address: one bound
    to its own loopback prints READY and then refuses everyone."""
    try:
        socket.create_connection((endpoint.host, endpoint.port), timeout=timeout).close()
    except OSError as error:
        raise TargetNotReady(
            f"it printed READY but {endpoint.host}:{endpoint.port} refuses connections ({error}): in a container "
            "a server must listen on every interface: pass {host} (0.0.0.0 there) to the address it binds"
        ) from None


def fill_template(template: str, values: dict[str, str]) -> list[str]:
    unknown = [
        name for _, name, _, _ in string.Formatter().parse(template) if name is not None and name not in PLACEHOLDERS
    ]
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} in --cmd; known: {', '.join(PLACEHOLDERS)}")
    return shlex.split(template.format(**values))


class TargetDidNotStart(HarnessError, TargetNotReady):
    """A target that could not be started or reached, remembered for the rest of the run.
    A HarnessError (checks that need it are ERRORs, never the target's fault) and a
    TargetNotReady (a check of the start itself judges it as the target's failure)."""


@dataclass(frozen=True)
class PreflightResult:
    """The first contact with a target: what it announced, or why nothing can be checked."""

    name: str
    problem: str | None = None  # a paragraph: why the target cannot be checked
    endpoint: Endpoint | None = None
    declared: Declared | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def warnings(self) -> list[str]:
        found = []
        if self.declared is not None and self.declared.info_problem is not None:
            found.append(
                f"the target did not answer INFO ({self.declared.info_problem}); checks that need its values"
                " will be ERRORs unless --declare gives them"
            )
        return found

    def summary(self) -> str:
        """One line for a target that answered: where, and what INFO said."""
        assert self.endpoint is not None and self.declared is not None
        endpoint = self.endpoint
        where = f"{endpoint.host}:{endpoint.port}"
        where += f", TLS on {endpoint.tls_port}" if endpoint.tls_port else ", no TLS port announced"
        pairs = " ".join(f"{key}={value}" for key, value in self.declared.pairs.items())
        info = f"INFO: {pairs}" if pairs else "INFO declared nothing"
        return f"answers at {where}; {info}" + "".join(f" (warning: {w})" for w in self.warnings)


@dataclass
class TargetPool:
    specs: dict[str, TargetSpec]
    certs: CertificateFiles
    overrides: dict[str, str]
    timeout: float = 5.0
    ready_timeout: float = 15.0
    docker: Any = None  # a suite.docker.environment.DockerEnvironment, for --image targets
    profile: str = DEFAULT_PROFILE  # how INFO is asked and a TLS port announced (suite.profiles)
    _shared: dict[str, Target] = field(default_factory=dict)
    _failed: dict[str, str] = field(default_factory=dict)  # target name -> why it did not start

    def shared(self, name: str) -> Target:
        """The instance most checks share (started once per run and worker)."""
        if name not in self._shared:
            self._shared[name] = self._open(name, SHARED_IDLE)
        return self._shared[name]

    @contextlib.contextmanager
    def fresh(
        self, name: str, idle: float = SHARED_IDLE, why: str = "", maxclients: int | None = None
    ) -> Iterator[Target]:
        """A separate instance for a check that would disturb others (``maxclients``:
        the client limit to start it with, through {maxclients})."""
        spec = self.specs[name]
        self._require_control(spec, why)
        if idle != SHARED_IDLE and spec.template is not None and "{idle}" not in spec.template:
            # Started without it, the server keeps its own timer: judging it as if set would blame the server.
            raise Unsupported(
                f"needs the server started with an idle timeout of {idle:g} s, and the --cmd template has no "
                "{idle} placeholder: add one (e.g. --idle {idle}) so the suite can set it"
            )
        target = self._open(name, idle, maxclients or SHARED_MAXCLIENTS)
        try:
            yield target
        finally:
            self._close(target)

    @contextlib.contextmanager
    def launched(self, name: str, idle: float = SHARED_IDLE) -> Iterator[tuple[Any, Endpoint]]:
        """A fresh instance, handed over as soon as it is ready (before the
        suite has sent it anything), with the process or container behind it.
        Raises TargetNotReady (a TargetDidNotStart) when it never announces itself."""
        spec = self.specs[name]
        self._require_control(spec, "it watches the server from its start")
        process, endpoint = self._launch_once(name, idle)
        try:
            yield process, endpoint
        finally:
            process.kill()

    def preflight(self, name: str) -> PreflightResult:
        """Start the target once (or dial it, for --address), read READY and INFO, and
        close it again. A failure is remembered: later checks of ``name`` get it at once."""
        try:
            target = self._open(name, SHARED_IDLE)
        except HarnessError as error:
            return PreflightResult(name, problem=str(error))
        self._close(target)
        return PreflightResult(name, endpoint=target.endpoint, declared=target.declared)

    def failure(self, name: str) -> str | None:
        """Why ``name`` could not be started or reached, if it could not."""
        return self._failed.get(name)

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

    def _open(self, name: str, idle: float, maxclients: int = SHARED_MAXCLIENTS) -> Target:
        spec = self.specs[name]
        if not spec.controllable:
            assert spec.address is not None
            self._raise_if_failed(name)
            trust = TlsTrust(spec.ca, spec.hostname)
            target = Target(spec.name, spec.address, Declared({}), trust, timeout=self.timeout)
            return self._with_info(target, remember_as=name, placed={})
        process, endpoint = self._launch_once(name, idle, maxclients)
        trust = TlsTrust(self.certs.ca, "localhost")
        target = Target(spec.name, endpoint, Declared({}), trust, process=process, timeout=self.timeout)
        placed = {"idle": f"{idle:g}", "maxclients": str(maxclients)}
        try:
            return self._with_info(target, remember_as=name, placed=placed)
        except BaseException:
            self._close(target)
            raise

    def _raise_if_failed(self, name: str) -> None:
        if name in self._failed:
            raise TargetDidNotStart(self._failed[name])

    def _remember(self, name: str, why: str) -> TargetDidNotStart:
        self._failed[name] = why
        return TargetDidNotStart(why)

    def _launch_once(self, name: str, idle: float, maxclients: int = SHARED_MAXCLIENTS) -> tuple[Any, Endpoint]:
        """Launch, unless an earlier launch failed: then that failure again, at once."""
        self._raise_if_failed(name)
        spec = self.specs[name]
        try:
            return self._launch(spec, idle, maxclients)
        except TargetNotReady as error:
            raise self._remember(name, f"{spec.name}: {error}") from None
        except OSError as error:  # the command itself could not be run
            raise self._remember(name, f"{spec.name}: the command could not be run: {error}") from None

    def _launch(self, spec: TargetSpec, idle: float, maxclients: int) -> tuple[Any, Endpoint]:
        if spec.image is not None:
            return self._launch_container(spec, idle, maxclients)
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
                "host": "127.0.0.1",
                "maxclients": str(maxclients),
            }
            announces_ready = self.profile == DEFAULT_PROFILE  # RESP2 has no READY line: its port is its word
            process = ServerProcess(fill_template(spec.template, values), announces_ready=announces_ready)
            try:
                # Only what the target announces is dialled: no READY tls= part, no TLS port
                # (even if the template passed one), so its TLS checks are UNSUPPORTED, not failed.
                endpoint = process.start(timeout=self.ready_timeout, expect_port=("127.0.0.1", port))
                return process, self._announced_by_template(spec, endpoint, tls_port)
            except TargetNotReady:
                process.kill()
                # Another program may have taken a port between choosing and binding: once more.
                if attempt == 1 and process.failed_on_a_taken_port():
                    continue
                raise
            except BaseException:
                process.kill()
                raise
        raise AssertionError("unreachable")

    def _announced_by_template(self, spec: TargetSpec, endpoint: Endpoint, tls_port: int) -> Endpoint:
        """RESP2 has no READY line: a template's {tls_port} is the TLS port, once it
        accepts (a server opens its listeners together, so a moment is enough)."""
        if self.profile == DEFAULT_PROFILE or endpoint.tls_port is not None or spec.template is None:
            return endpoint
        if "{tls_port}" not in spec.template:
            return endpoint
        deadline = time.monotonic() + TLS_LISTEN_GRACE
        while True:
            try:
                socket.create_connection((endpoint.host, tls_port), timeout=TLS_LISTEN_GRACE).close()
            except OSError:
                if time.monotonic() >= deadline:
                    return endpoint  # never listened: no TLS port, and its checks are UNSUPPORTED
                threading.Event().wait(0.05)  # a look at the port every 50 ms, until the deadline
                continue
            return Endpoint(endpoint.host, endpoint.port, tls_port)

    def _launch_container(self, spec: TargetSpec, idle: float, maxclients: int) -> tuple[Any, Endpoint]:
        docker = self.docker
        if docker is None:
            raise HarnessError("an --image target needs a Docker engine, and none was set up")
        assert spec.image is not None
        mounts = {str(self.certs.cert.parent): CERTS_MOUNT}
        workdir = None
        if spec.template is not None:  # the user's server, in the base image (or its own, built on it)
            image = docker.user_images[spec.name]
            values = {
                "port": "4481",
                "tls_port": "4482",
                "cert": f"{CERTS_MOUNT}/{self.certs.cert.name}",
                "key": f"{CERTS_MOUNT}/{self.certs.key.name}",
                "ca": f"{CERTS_MOUNT}/{self.certs.ca.name}",
                "idle": f"{idle:g}",
                "host": "0.0.0.0",  # reached by the container's address, not its loopback
                "maxclients": str(maxclients),
            }
            # exec: the server itself is PID 1, and the signals the suite sends reach it
            command = ["sh", "-c", "exec " + shlex.join(fill_template(spec.template, values))]
            if spec.dockerfile is None and spec.workdir is not None:
                mounts[str(spec.workdir)] = USER_WORKDIR
                workdir = USER_WORKDIR
        else:
            assert spec.arch is not None
            image, command = docker.images[spec.image], container_command(spec.arch, idle, self.profile, maxclients)
        process = ContainerProcess(
            docker.engine,
            image,
            command,
            network=docker.network,
            labels=docker.labels(),
            mounts=mounts,
            name=docker.container_name(),
            workdir=workdir,
        )
        try:
            endpoint = process.start(timeout=self.ready_timeout)
            if spec.template is not None:
                _reachable_in_container(endpoint, self.timeout)
        except BaseException:
            process.kill()
            raise
        return process, endpoint

    def _with_info(self, target: Target, remember_as: str, placed: dict[str, str]) -> Target:
        """Read INFO on a connection of its own; a target that cannot be reached at all
        is remembered as failed, one that does not answer INFO keeps that as its info_problem.
        ``placed``: the values the suite filled into the template (RESP2 declares by them)."""
        endpoint = target.endpoint
        try:
            wire = Wire.connect(endpoint.host, endpoint.port, timeout=self.timeout)
        except OSError as error:
            raise self._remember(remember_as, self._unreachable(target, error)) from None
        if self.profile != DEFAULT_PROFILE:
            with wire:
                info, info_problem = declaration.read_info(wire, self.timeout)
            template = self.specs[remember_as].template if target.process is not None else None
            pairs = {**declaration.from_placeholders(template, placed, endpoint.tls_port), **info}
            target.declared = Declared({**pairs, **self.overrides}, info_problem)
            return target
        with wire:
            try:
                # One request at a time: a server that mishandles pipelining must
                # still get its declaration read (its pipelining is judged elsewhere).
                wire.send(b"INFO\r\n", self.timeout)
                line = wire.read_line(self.timeout)
                if line is not None and line.startswith(b"$"):
                    # QUIT, and wait for the server's close, so that this connection
                    # no longer counts against the limit when the checks begin.
                    wire.send(b"QUIT\r\n", self.timeout)
                    wire.wait_for_end(self.timeout)
            except (OSError, WireTimeout) as error:
                line = None
                problem: str | None = f"the connection failed: {error}"
            else:
                problem = _info_problem(line, wire, self.timeout)
        value = line[1:].rstrip(b"\r\n") if line is not None and problem is None else b""
        target.declared = Declared.parse_info(value, self.overrides, problem)
        return target

    def _unreachable(self, target: Target, error: OSError) -> str:
        where = f"{target.endpoint.host}:{target.endpoint.port}"
        if isinstance(error, ConnectionRefusedError):
            what = f"nothing accepts connections at {where} (connection refused)"
        elif isinstance(error, TimeoutError):
            what = f"{where} did not accept a connection within {self.timeout:g} s"
        else:
            what = f"cannot connect to {where}: {error.strerror or error}"
        if target.process is None:
            return f"{target.name}: {what}"
        died = target.process.exit_report()
        return f"{target.name}: the target announced {where}, but {what}" + (f"; {died}" if died else "")

    def _close(self, target: Target) -> None:
        target.close_probes()
        if target.process is not None:
            target.process.kill()


def _info_problem(line: bytes | None, wire: Wire, timeout: float) -> str | None:
    """Why an INFO request told nothing, or None when it was answered with a value."""
    if line is None:
        if wire.ending in (Ending.FIN, Ending.RST):
            return f"the connection was closed ({wire.ending.value}) before INFO was answered"
        return f"INFO got no answer within {timeout:g} s"
    if not line.startswith(b"$"):
        answer = escape(line.rstrip(b"\r\n"), 120)
        return f"INFO was answered with '{answer}'"
    return None
