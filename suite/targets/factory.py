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

from ..certs import CertificateFiles
from ..probe import HarnessError, Unsupported
from ..wire import Wire, WireTimeout
from .base import Declared, Target, TlsTrust
from .process import Endpoint, ServerProcess, TargetNotReady, free_port

PLACEHOLDERS = ("port", "tls_port", "cert", "key", "ca", "idle")
SHARED_IDLE = 60.0  # long enough that no ordinary check meets it


@dataclass
class TargetSpec:
    name: str
    template: str | None = None  # a command line with {placeholders}
    address: Endpoint | None = None
    ca: Path | None = None  # for --address: the CA that signed the target's certificate
    hostname: str = "localhost"

    @property
    def controllable(self) -> bool:
        return self.template is not None

    def describe(self) -> str:
        if self.template is not None:
            return f"--cmd {shlex.quote(self.template)}"
        assert self.address is not None
        tls = f",{self.address.tls_port}" if self.address.tls_port else ""
        return f"--address {self.address.host}:{self.address.port}{tls}"


# Limits small enough that the flood and overflow checks stay quick on two cores.
REFERENCE_MAX_CONNECTIONS = 32
REFERENCE_WORKERS = 8  # preforking and thread-pool


def reference_template(arch: str, program: str | None = None) -> str:
    """The --cmd template for a reference server (or for ``program``, which
    takes the same flags, such as a mutant of one)."""
    program = program or f"{shlex.quote(sys.executable)} -m reference_servers {arch}"
    sizing = f"--max-connections {REFERENCE_MAX_CONNECTIONS}"
    if arch in ("preforking", "thread-pool"):
        sizing = f"--concurrency {REFERENCE_WORKERS}"
    flags = "--port {port} --tls-port {tls_port} --cert {cert} --key {key} --idle-timeout {idle}"
    return f"{program} {flags} {sizing}"


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
        if not spec.controllable:
            raise Unsupported(
                f"this check needs a fresh server process ({why or 'it disturbs the server'}); "
                "point the suite at a command with --cmd instead of --address"
            )
        target = self._open(spec, idle)
        try:
            yield target
        finally:
            self._close(target)

    def close(self) -> None:
        for target in self._shared.values():
            self._close(target)
        self._shared.clear()

    # ---- internals -----------------------------------------------------------

    def _open(self, spec: TargetSpec, idle: float) -> Target:
        if spec.template is None:
            assert spec.address is not None
            trust = TlsTrust(spec.ca, spec.hostname)
            return self._with_info(Target(spec.name, spec.address, Declared({}), trust, timeout=self.timeout))
        port, tls_port = free_port(), free_port()
        values = {
            "port": str(port),
            "tls_port": str(tls_port),
            "cert": str(self.certs.cert),
            "key": str(self.certs.key),
            "ca": str(self.certs.ca),
            "idle": f"{idle:g}",
        }
        argv = fill_template(spec.template, values)
        process = ServerProcess(argv)
        try:
            endpoint = process.start(timeout=self.ready_timeout, expect_port=("127.0.0.1", port))
        except (TargetNotReady, OSError) as error:
            process.kill()
            raise HarnessError(f"{spec.name}: the target did not become ready: {error}") from None
        if endpoint.tls_port is None and "{tls_port}" in spec.template:
            endpoint = Endpoint(endpoint.host, endpoint.port, tls_port)
        trust = TlsTrust(self.certs.ca, "localhost")
        target = Target(spec.name, endpoint, Declared({}), trust, process=process, timeout=self.timeout)
        try:
            return self._with_info(target)
        except BaseException:
            self._close(target)
            raise

    def _with_info(self, target: Target) -> Target:
        try:
            with Wire.connect(target.endpoint.host, target.endpoint.port, timeout=self.timeout) as wire:
                # QUIT, and wait for the server's close, so that this connection
                # no longer counts against the limit when the checks begin.
                wire.send(b"INFO\r\nQUIT\r\n", self.timeout)
                line = wire.read_line(self.timeout) or b""
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
