"""What a server declares about itself through INFO."""

from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL_NAME = "cloudhash/1"
FEATURE_ORDER = ("framed", "tls", "starttls", "urgent")


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

    def __post_init__(self) -> None:
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
            ("impl", "sockspec-reference"),
        ]
        return " ".join(f"{k}={v}" for k, v in pairs).encode("ascii")
