"""A target as checks see it: where it is, what it declares, how to talk to it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from ..probe import HarnessError, Probe, Unsupported
from ..wire import Wire
from .process import Endpoint, ServerHandle

INTEGER_KEYS = ("concurrency", "max_connections", "idle_timeout_ms", "max_line", "max_frame")


@dataclass(frozen=True)
class Declared:
    """What the target says about itself (INFO), with --declare overriding.
    ``info_problem`` says why INFO told nothing (None when it was answered)."""

    pairs: dict[str, str]
    info_problem: str | None = None

    @classmethod
    def parse_info(cls, value: bytes, overrides: dict[str, str], info_problem: str | None = None) -> Declared:
        pairs: dict[str, str] = {}
        for token in value.decode("utf-8", "replace").split(" "):
            key, sep, val = token.partition("=")
            if sep:
                pairs[key] = val
        pairs.update(overrides)
        return cls(pairs, info_problem)

    def number(self, key: str) -> int:
        text = self.pairs.get(key)
        if text is None or not text.isdigit():
            raise HarnessError(f"{self._not_declared(key, text)}; pass --declare {key}=N to check it anyway")
        return int(text)

    def _not_declared(self, key: str, text: str | None) -> str:
        if self.info_problem is not None and text is None:
            return f"the target did not answer INFO ({self.info_problem}), so {key} is unknown"
        return f"the target does not declare {key} (INFO said {text!r})"

    @property
    def overflow(self) -> str:
        value = self.pairs.get("overflow")
        if value not in ("busy", "queue"):
            if value is None and self.info_problem is not None:
                raise HarnessError(self._not_declared("overflow", None) + "; pass --declare overflow=busy|queue")
            raise HarnessError(f"the target declares overflow={value!r}; expected busy or queue (or --declare)")
        return value

    @property
    def features(self) -> frozenset[str]:
        return frozenset(f for f in self.pairs.get("features", "").split(",") if f)

    def has(self, feature: str) -> bool:
        return feature in self.features


@dataclass
class TlsTrust:
    ca: Path | None
    hostname: str = "localhost"

    def context(self, minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        return context


@dataclass
class Target:
    name: str
    endpoint: Endpoint
    declared: Declared
    trust: TlsTrust
    process: ServerHandle | None = None  # set when the suite started it
    timeout: float = 5.0
    probes: list[Probe] = field(default_factory=list)

    @property
    def owned(self) -> bool:
        return self.process is not None

    def connect(self, label: str = "connection", timeout: float | None = None) -> Probe:
        wire = Wire.connect(self.endpoint.host, self.endpoint.port, timeout=timeout or self.timeout)
        probe = Probe(wire, label=label, timeout=timeout or self.timeout)
        self.probes.append(probe)
        return probe

    def connect_tls(
        self,
        label: str = "tls connection",
        context: ssl.SSLContext | None = None,
        timeout: float | None = None,
    ) -> Probe:
        port = self.tls_port()
        wire = Wire.connect_tls(
            self.endpoint.host,
            port,
            context or self.trust.context(),
            server_hostname=self.trust.hostname,
            timeout=timeout or self.timeout,
        )
        probe = Probe(wire, label=label, timeout=timeout or self.timeout)
        self.probes.append(probe)
        return probe

    def connect_tls_port_plain(self, label: str = "plaintext to the TLS port") -> Probe:
        wire = Wire.connect(self.endpoint.host, self.tls_port(), timeout=self.timeout)
        probe = Probe(wire, label=label, timeout=self.timeout)
        self.probes.append(probe)
        return probe

    def tls_port(self) -> int:
        """The implicit-TLS port the target announced; the suite dials no other."""
        if self.endpoint.tls_port is None:
            raise Unsupported(self._why_no_tls_port())
        return self.endpoint.tls_port

    def _why_no_tls_port(self) -> str:
        if self.process is None:
            why = "no TLS port was given (--address HOST:PORT,TLSPORT names one)"
        elif self.process.ready_line is None:
            why = "the target printed no READY line, so it announced no tls= port"
        else:
            why = "the READY line announced no tls= port"
        if self.declared.has("tls"):
            why += ", although INFO declares feature tls"
        return f"the target has no implicit-TLS port: {why}"

    def transcripts(self) -> list[object]:
        return [probe.wire.transcript for probe in self.probes]

    def close_probes(self) -> None:
        for probe in self.probes:
            probe.close()
        self.probes.clear()
