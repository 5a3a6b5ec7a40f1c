"""``python -m reference_servers ARCH [flags]`` (also ``sockspec serve``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .core import CLOUDHASH, PROTOCOL_NAMES
from .runtime.launch import Architecture, run
from .runtime.settings import Settings

# The book's chapters, in its order.
ARCHITECTURES = {
    "serial": "serial",
    "process-per-connection": "process_per_connection",
    "thread-per-connection": "thread_per_connection",
    "preforking": "preforking",
    "thread-pool": "thread_pool",
    "evented": "evented",
    "hybrid": "hybrid",
}


def load(arch: str) -> Architecture:
    module = importlib.import_module(f"reference_servers.{ARCHITECTURES[arch]}")
    return module  # type: ignore[return-value,unused-ignore]


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400 * 365:
        raise argparse.ArgumentTypeError(f"must be between 0 and a year, not {value}")
    return value


def parser(prog: str = "python -m reference_servers") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a reference server built on one of the book's architectures, speaking CloudHash/1"
        " (PROTOCOL.md) or, with --protocol resp, RESP2 (PROTOCOL-RESP2.md).",
    )
    p.add_argument("arch", choices=list(ARCHITECTURES), metavar="ARCH", help=", ".join(ARCHITECTURES))
    p.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default=CLOUDHASH,
        help="cloudhash (CloudHash/1, the default) or resp (RESP2, Redis-compatible: PING, ECHO, SET, GET, DEL,"
        " INCR, BLPOP, INFO, CONFIG GET, QUIT; --max-connections is its maxclients, --idle-timeout its timeout)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=4481, help="plain port; 0 lets the OS pick (default 4481)")
    p.add_argument("--tls-port", type=_port, help="also serve implicit TLS on this port (needs --cert)")
    p.add_argument("--cert", help="PEM certificate chain; enables STARTTLS (CloudHash/1)")
    p.add_argument("--key", help="PEM private key, unencrypted (default: in --cert)")
    p.add_argument("--max-connections", type=_positive, default=128, help="connection limit (default 128)")
    p.add_argument(
        "--concurrency",
        type=_positive,
        help="workers or threads, where the architecture has them (preforking and thread-pool: 32; hybrid: 2)",
    )
    p.add_argument("--idle-timeout", type=_seconds, default=300.0, help="seconds; 0 disables (default 300)")
    p.add_argument(
        "--max-line",
        type=_positive,
        default=8192,
        help="CloudHash/1's line, in bytes, terminator included (default 8192; RESP2's inline limit is Redis's 64 KiB)",
    )
    p.add_argument(
        "--max-frame",
        type=_positive,
        default=1 << 20,
        help="frame payload bytes; under --protocol resp, bulk string bytes (default 1048576)",
    )
    p.add_argument(
        "--max-output",
        type=_positive,
        default=1 << 20,
        help="pending output per connection, in bytes, past which the connection waits for its peer to read"
        " (default 1048576)",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m reference_servers") -> int:
    p = parser(prog)
    args = p.parse_args(argv)
    if args.tls_port is not None and args.cert is None:
        p.error("--tls-port needs --cert")
    if args.key is not None and args.cert is None:
        p.error("--key needs --cert")
    if args.max_line < 2:
        p.error("--max-line must be at least 2")
    settings = Settings(
        arch=args.arch,
        host=args.host,
        port=args.port,
        tls_port=args.tls_port,
        cert=args.cert,
        key=args.key,
        max_connections=args.max_connections,
        concurrency=args.concurrency,
        idle_timeout=args.idle_timeout,
        max_line=args.max_line,
        max_frame=args.max_frame,
        max_output=args.max_output,
        protocol=args.protocol,
    )
    return run(load(args.arch), settings)


if __name__ == "__main__":
    sys.exit(main())
