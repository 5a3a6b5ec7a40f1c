"""The client under test, as checks see it: run it against one of the
suite's servers, and judge what it did with the bytes on the wire beside it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..probe import HarnessError, Unsupported, Violation
from .adversary import Adversary, Exchange, Script
from .certs import ClientCertificates
from .runner import ClientRun, ContainerPlacement, LocalPlacement, Placement, command
from .spec import ClientSpec

RUN_MARGIN = 5.0  # beyond the longest a scenario may take, before a client counts as hung


@dataclass
class Scenario:
    """One run of the client against one of the suite's servers."""

    run: ClientRun
    server: Adversary
    dns_queries: list[str] | None = None  # what the client asked the suite's DNS server, in DNS scenarios

    @property
    def exchanges(self) -> list[Exchange]:
        return self.server.exchanges

    def violation(
        self, summary: str, *, expected: str | bytes | None = None, actual: str | bytes | None = None
    ) -> Violation:
        return Violation(
            summary,
            expected=expected,
            actual=actual,
            transcripts=[exchange.transcript for exchange in self.exchanges],
            context=self.run.describe() + self._dns_notes() + self._server_notes(),
        )

    def _dns_notes(self) -> list[str]:
        if self.dns_queries is None:
            return []
        if not self.dns_queries:
            return ["The suite's DNS server: no query from the client."]
        return ["The suite's DNS server got, from the client:", *(f"  {line}" for line in self.dns_queries)]

    def _server_notes(self) -> list[str]:
        if not self.exchanges:
            return ["The suite's server: no connection reached it."]
        lines = []
        for index, exchange in enumerate(self.exchanges, 1):
            facts = [f"from {exchange.peer}", exchange.mode]
            if exchange.framed:
                facts.append("framed")
            if exchange.mode != "plain":
                facts.append(
                    f"TLS {exchange.tls_version}, SNI {exchange.sni!r}"
                    if exchange.tls_version
                    else f"handshake failed: {exchange.handshake_error}"
                    if exchange.handshake_error
                    else "no TLS handshake"
                )
            lines.append(f"The suite's server, connection {index}: {'; '.join(facts)}")
            lines += [f"  noticed: {problem}" for problem in exchange.problems]
        return lines

    # ---- expectations --------------------------------------------------------------

    def expect_status(self, status: int, why: str) -> None:
        if self.run.error:
            raise HarnessError(f"the client command could not be started: {self.run.error}")
        for exchange in self.exchanges:
            if exchange.error:
                raise HarnessError(f"the suite's server failed: {exchange.error}")
        if self.run.status != status:
            raise self.violation(why, expected=f"exit status {status}", actual=self.run.outcome())

    def expect_stdout(self, output: bytes, why: str) -> None:
        if self.run.stdout != output:
            raise self.violation(why, expected=output, actual=self.run.stdout)

    def expect_within(self, seconds: float, why: str) -> None:
        if self.run.elapsed > seconds:
            raise self.violation(why, expected=f"done within {seconds:.2f} s", actual=self.run.outcome())

    def expect_request(self, request: bytes) -> None:
        """The client sent exactly this request (and nothing else that counts)."""
        sent = [
            r for exchange in self.exchanges for r in exchange.requests if r.upper() not in (b"FRAMED", b"STARTTLS")
        ]
        if sent != [request]:
            raise self.violation(
                "the suite's server should have received the one request the client was asked to send",
                expected=repr([request]),
                actual=repr(sent),
            )

    def expect_no_request(self, why: str) -> None:
        sent = [r for exchange in self.exchanges for r in exchange.requests]
        if sent:
            raise self.violation(why, expected="no request", actual=repr(sent))

    def only_exchange(self) -> Exchange:
        if len(self.exchanges) != 1:
            raise self.violation(
                "the client should have made exactly one connection to the suite's server",
                expected="1 connection",
                actual=f"{len(self.exchanges)} connections",
            )
        return self.exchanges[0]


class ClientUnderTest:
    def __init__(
        self,
        spec: ClientSpec,
        certs: ClientCertificates,
        docker: Any,
        docker_reason: str,
        slot: int,
    ) -> None:
        self.spec = spec
        self.certs = certs
        self.local = LocalPlacement(certs.directory)
        self.docker = docker
        self.docker_reason = docker_reason
        self.slot = slot
        self._contained: ContainerPlacement | None = None

    @property
    def placement(self) -> Placement:
        """Where ordinary scenarios run: the client's image, or this machine."""
        return self.dns_placement() if self.spec.image is not None else self.local

    def dns_placement(self) -> ContainerPlacement:
        """A container whose resolver is the suite's DNS server (Unsupported without Docker)."""
        if self.docker is None or self.docker.plan is None or not self.docker.dns:
            raise Unsupported(
                f"the DNS scenarios run the client in a container next to the DNS server: {self.docker_reason}"
            )
        if self._contained is None:
            self._contained = ContainerPlacement.for_spec(self.docker, self.spec, self.certs.directory, self.slot)
        return self._contained

    def scenario(
        self,
        script: Script,
        *,
        cmd: str,
        host: str | None = None,
        placement: Placement | None = None,
        feature: str | None = None,
        tls: str | None = "good",
        tls_1_1_only: bool = False,
        limit: float = 15.0,
        port: int | str | None = None,
        starttls_pause: float = 0.0,
        starttls_refusal: bytes | None = None,
        edit: Callable[[str], str] | None = None,
    ) -> Scenario:
        """Start a server running ``script``, run the client against it, and
        wait for the server's side to end. ``limit``: the longest a correct
        client may take; it is killed at ``limit`` + a margin. ``edit``
        changes the client's template first (a usage error of CH-CLIENT-13)."""
        placement = placement or self.placement
        context = self.certs.server_context(tls, tls_1_1_only=tls_1_1_only) if tls else None
        deadline = limit + RUN_MARGIN
        server = Adversary(
            placement.listen,
            script,
            tls=context,
            timeout=deadline + 5,
            linger=limit,
            starttls_pause=starttls_pause,
            starttls_refusal=starttls_refusal,
        )
        contained = placement if isinstance(placement, ContainerPlacement) else None
        queries_before = len(contained.dns_queries()) if contained is not None else 0
        with server:
            port = server.port if port is None else port
            argv = command(self.spec, feature, placement, host=host or placement.name, port=port, cmd=cmd, edit=edit)
            run = placement.run(self.spec, argv, deadline)
            server.finished(5.0)
        queries = contained.dns_queries()[queries_before:] if contained is not None else None
        return Scenario(run, server, queries)

    def close(self) -> None:
        if self._contained is not None:
            self._contained.close()


def fresh_token() -> str:
    return f"sockspec-{os.urandom(4).hex()}"
