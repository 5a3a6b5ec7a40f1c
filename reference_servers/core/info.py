"""What a server declares about itself through INFO, in each protocol's form."""

from __future__ import annotations

from dataclasses import dataclass, field

from .commands import CLOUDHASH, PROTOCOL_NAMES, RESP

PROTOCOL_NAME = "cloudhash/1"
FEATURE_ORDER = ("framed", "tls", "starttls", "urgent")
RESP_FEATURES = frozenset({"tls"})  # no framed mode, no STARTTLS, and urgent data aborts nothing
IMPLEMENTATION = "sockspec-reference"


@dataclass(frozen=True)
class ServerInfo:
    arch: str
    concurrency: int
    max_connections: int
    overflow: str  # "busy" or "queue"
    idle_timeout_ms: int  # 0 disables the idle timer
    max_line: int = 8192
    max_frame: int = 1 << 20
    features: frozenset[str] = field(default_factory=frozenset)
    max_output: int = 1 << 20  # the mark for a connection's pending output (CH-ROBUST-1)
    protocol: str = CLOUDHASH  # or RESP (commands.PROTOCOL_NAMES)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOL_NAMES:
            raise ValueError(f"protocol must be one of {PROTOCOL_NAMES}, not {self.protocol!r}")
        if self.protocol == RESP and not self.features <= RESP_FEATURES:
            raise ValueError(f"a RESP2 server offers only {sorted(RESP_FEATURES)}, not {sorted(self.features)}")
        if self.overflow not in ("busy", "queue"):
            raise ValueError(f"overflow must be busy or queue, not {self.overflow!r}")
        unknown = set(self.features) - set(FEATURE_ORDER)
        if unknown:
            raise ValueError(f"unknown features: {sorted(unknown)}")
        if self.max_line < 2:
            raise ValueError("max_line must be at least 2 (room for a command and LF)")
        if self.max_output < 1:
            raise ValueError("max_output must be at least 1")

    def render(self) -> bytes:
        """The INFO value: space-separated key=value pairs."""
        features = ",".join(f for f in FEATURE_ORDER if f in self.features)
        pairs = [
            ("proto", PROTOCOL_NAME),
            ("arch", self.arch),
            ("concurrency", str(self.concurrency)),
            ("max_connections", str(self.max_connections)),
            ("overflow", self.overflow),
            ("idle_timeout_ms", str(self.idle_timeout_ms)),
            ("max_line", str(self.max_line)),
            ("max_frame", str(self.max_frame)),
            ("features", features),
            ("max_output", str(self.max_output)),
            ("impl", IMPLEMENTATION),
        ]
        return " ".join(f"{k}={v}" for k, v in pairs).encode("ascii")

    @property
    def has_maxclients(self) -> bool:
        """Whether the limit is Redis's ``maxclients``: the connection past it is
        refused. A server that queues it in the listen backlog instead has none."""
        return self.overflow == "busy"

    @property
    def timeout_seconds(self) -> str:
        return f"{self.idle_timeout_ms / 1000:g}"

    def render_resp(self) -> bytes:
        """The INFO value in RESP2: ``key:value`` lines under ``# Section``
        headings, with Redis's names where Redis has one (``maxclients``, and
        ``timeout`` in seconds), and ``concurrency``, the clients served at once."""
        server = [
            ("server_name", IMPLEMENTATION),
            ("proto", "resp2"),
            ("arch", self.arch),
            ("features", ",".join(sorted(self.features))),
        ]
        clients = [("maxclients", str(self.max_connections))] if self.has_maxclients else []
        clients += [
            ("concurrency", str(self.concurrency)),
            ("overflow", self.overflow),
            ("timeout", self.timeout_seconds),
            ("max_output", str(self.max_output)),
        ]
        lines = ["# Server", *(f"{k}:{v}" for k, v in server), "", "# Clients", *(f"{k}:{v}" for k, v in clients)]
        return "".join(line + "\r\n" for line in lines).encode("ascii")

    def config(self) -> dict[str, str]:
        """CONFIG GET's parameters, by Redis's names: the settings this server has,
        and no persistence (``save`` empty, ``appendonly`` no)."""
        parameters = {"timeout": self.timeout_seconds, "save": "", "appendonly": "no"}
        if self.has_maxclients:
            parameters["maxclients"] = str(self.max_connections)
        return parameters
