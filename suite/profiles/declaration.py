"""What a RESP2 target declares (PROTOCOL-RESP2.md, section 1): the values
the suite filled into the --cmd template's placeholders, then its INFO reply
(a bulk string of ``key:value`` lines), then --declare, each overriding the
one before. CloudHash/1's INFO line stays in suite.targets.base.Declared.
"""

from __future__ import annotations

from ..escape import escape
from ..wire import Ending, Wire, WireTimeout
from . import resp

__all__ = ["INFO_KEYS", "from_placeholders", "parse_info", "read_info"]

# The INFO fields the profile reads (Redis 7.0 reports maxclients in "# Clients";
# timeout, features and concurrency are for servers that want to declare them), and for people.
INFO_KEYS = ("redis_version", "server_name", "maxclients", "timeout", "features", "concurrency")


def parse_info(text: bytes) -> dict[str, str]:
    """The known ``key:value`` pairs of an INFO reply's bulk string."""
    pairs: dict[str, str] = {}
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep and key in INFO_KEYS:
            pairs[key] = value.strip()
    return pairs


def read_info(wire: Wire, timeout: float) -> tuple[dict[str, str], str | None]:
    """Ask INFO on its own connection, then QUIT and wait for the close (so
    that it no longer counts against maxclients when the checks begin). The
    pairs, and why INFO told nothing (None when it was answered)."""
    try:
        wire.send(resp.command(b"INFO"), timeout)
        reply = resp.read_reply(wire, timeout)
        if reply is None:
            if wire.ending in (Ending.FIN, Ending.RST):
                return {}, f"the connection was closed ({wire.ending.value}) before INFO was answered"
            return {}, f"INFO got no whole reply within {timeout:g} s"
        wire.send(resp.command(b"QUIT"), timeout)
        resp.read_reply(wire, timeout)
        wire.wait_for_end(timeout)
    except (OSError, WireTimeout) as error:
        return {}, f"the connection failed: {error}"
    try:
        parsed, _ = resp.parse(reply)
    except (resp.Incomplete, resp.Malformed):
        parsed = None
    if parsed is None or parsed.kind != "bulk" or not isinstance(parsed.value, bytes):
        answer = escape(reply.rstrip(b"\r\n"), 120)
        return {}, f"INFO was answered with '{answer}', not a bulk string"
    return parse_info(parsed.value), None


def from_placeholders(template: str | None, values: dict[str, str], tls_port: int | None) -> dict[str, str]:
    """What the suite itself set through the template: {idle} is ``timeout``,
    {maxclients} is ``maxclients``, and a TLS port is the feature ``tls``."""
    pairs: dict[str, str] = {"proto": "resp2"}
    if template is not None and "{idle}" in template:
        pairs["timeout"] = values["idle"]
    if template is not None and "{maxclients}" in template:
        pairs["maxclients"] = values["maxclients"]
    pairs["features"] = "tls" if tls_port is not None else ""
    return pairs
