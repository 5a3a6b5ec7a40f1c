"""How checks talk to a target: a Wire plus expectations that raise a
Violation carrying everything needed to explain the failure."""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field

from .escape import escape
from .wire import Ending, Transcript, Wire, frame

DEFAULT_TIMEOUT = 5.0


class Violation(AssertionError):
    """The target broke a requirement."""

    def __init__(
        self,
        summary: str,
        *,
        expected: str | bytes | None = None,
        actual: str | bytes | None = None,
        transcripts: list[Transcript] | None = None,
        ending: Ending | None = None,
        context: list[str] | None = None,
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.expected = expected
        self.actual = actual
        self.transcripts = transcripts or []
        self.ending = ending
        self.context = context or []  # more lines for the explanation (a client's command, exit, output)


class Unsupported(Exception):
    """The target does not declare what this check needs."""


class HarnessError(Exception):
    """The suite could not do its part (set-up, environment): never the target's fault."""


@dataclass
class Measurement:
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Probe:
    wire: Wire
    label: str = "connection"
    timeout: float = DEFAULT_TIMEOUT
    framed: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.wire.transcript.label:
            self.wire.transcript.label = self.label

    # ---- sending -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.wire.send(data, self.timeout)
        except OSError as error:
            raise self.violation(f"sending failed: {error}") from None

    def send_frame(self, payload: bytes) -> None:
        self.send(frame(payload))

    def request(self, body: bytes) -> None:
        """Send one request in the connection's mode: a frame, or a line with CRLF."""
        self.send(frame(body) if self.framed else body + b"\r\n")

    def ask(self, body: bytes, reply: bytes, why: str = "", timeout: float | None = None) -> None:
        """One request, and its reply read before anything else is sent.

        Checks that are not about pipelining use this, so that a server that
        cannot pipeline fails CH-FRAME-17/18 and nothing else."""
        self.request(body)
        self.expect_reply(reply, why, timeout)

    def ask_error(self, body: bytes, code: str, why: str = "", timeout: float | None = None) -> bytes:
        """One request, and its ``-ERR CODE`` reply read before anything else is sent."""
        self.request(body)
        return self.expect_error(code, why or f"the request {escape(body)!r}", timeout)

    def switch_to_framed(self) -> None:
        """FRAMED, its line-mode +OK, and framed mode from the next byte on (section 8)."""
        self.send(b"FRAMED\r\n")
        self.expect_line(b"+OK\r\n", why="the answer to FRAMED")
        self.framed = True

    def send_slowly(self, data: bytes, pieces: list[int], gap: float = 0.005) -> None:
        """Send ``data`` cut at ``pieces`` (lengths), pausing between them so
        that each piece leaves as its own segment (TCP_NODELAY is on)."""
        offset = 0
        for size in [*pieces, len(data)]:
            chunk = data[offset : offset + size] if size else b""
            if chunk:
                self.send(chunk)
                offset += len(chunk)
                self.quiet_for(gap)
            if offset >= len(data):
                break

    def send_urgent(self, byte: bytes = b"!") -> None:
        try:
            self.wire.send_urgent(byte)
        except OSError as error:
            raise self.violation(f"sending the urgent byte failed: {error}") from None

    def shutdown_write(self) -> None:
        self.wire.shutdown_write()

    # ---- receiving -----------------------------------------------------------

    def line(self, what: str = "a response line", timeout: float | None = None) -> bytes:
        line = self.wire.read_line(self.timeout if timeout is None else timeout)
        if line is None:
            raise self.violation(f"expected {what}, got {self._nothing()}", expected=what)
        return line

    def expect_line(self, expected: bytes, timeout: float | None = None, why: str = "") -> None:
        got = self.wire.read_line(self.timeout if timeout is None else timeout)
        if got != expected:
            raise self._mismatch(f"expected the response {escape(expected)}", why, got, expected)

    def expect_lines(self, expected: list[bytes], timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for index, want in enumerate(expected):
            self.expect_line(
                want, max(0.0, deadline - time.monotonic()), why=f"response {index + 1} of {len(expected)}"
            )

    def expect_prefix(self, prefix: bytes, timeout: float | None = None, why: str = "") -> bytes:
        got = self.wire.read_line(self.timeout if timeout is None else timeout)
        if got is None or not got.startswith(prefix) or not got.endswith(b"\r\n"):
            raise self._mismatch(f"expected a line starting {escape(prefix)} and ending \\r\\n", why, got, prefix)
        return got

    def frame(self, what: str = "a response frame", timeout: float | None = None) -> bytes:
        got = self.wire.read_frame(self.timeout if timeout is None else timeout)
        if got is None:
            raise self.violation(f"expected {what}, got {self._nothing()}", expected=what, actual=self.wire.pending())
        return got

    def expect_frame(self, payload: bytes, timeout: float | None = None, why: str = "") -> None:
        got = self.wire.read_frame(self.timeout if timeout is None else timeout)
        if got != payload:
            summary = f"expected a frame with payload {escape(payload)}"
            raise self._mismatch(summary, why, frame(got) if got is not None else None, frame(payload))

    def next_reply(self, timeout: float | None = None) -> bytes | None:
        """The next reply as received in the current mode: a line with its
        terminator, or a frame's payload; None on end or deadline."""
        wait = self.timeout if timeout is None else timeout
        return self.wire.read_frame(wait) if self.framed else self.wire.read_line(wait)

    def expect_bytes(self, expected: bytes, why: str, timeout: float | None = None) -> None:
        """Exactly these bytes next on the wire, whatever the mode (frame headers included)."""
        got = self.wire.read_exactly(len(expected), self.timeout if timeout is None else timeout)
        if got != expected:
            raise self.violation(f"expected {why}", expected=expected, actual=got + self.wire.pending())

    def expect_reply(self, body: bytes, why: str = "", timeout: float | None = None) -> None:
        """A response in the current mode: a line with CRLF, or a frame."""
        if self.framed:
            self.expect_frame(body, timeout, why)
        else:
            self.expect_line(body + b"\r\n", timeout, why)

    def expect_error(self, code: str, why: str = "", timeout: float | None = None) -> bytes:
        """``-ERR CODE`` (optionally followed by SP and text) in the current mode."""
        prefix = b"-ERR " + code.encode()
        if self.framed:
            got = self.wire.read_frame(self.timeout if timeout is None else timeout)
            ok = got is not None and (got == prefix or got.startswith(prefix + b" "))
        else:
            got = self.wire.read_line(self.timeout if timeout is None else timeout)
            ok = got is not None and (
                got == prefix + b"\r\n" or (got.startswith(prefix + b" ") and got.endswith(b"\r\n"))
            )
        if not ok:
            raise self._mismatch(f"expected -ERR {code}", why, got, prefix)
        assert got is not None
        return got

    def expect_end(self, timeout: float | None = None, allow_reset: bool = False, why: str = "") -> Ending:
        """Nothing more but the end of the connection: FIN (or RST if allowed)."""
        ending = self.wire.wait_for_end(self.timeout if timeout is None else timeout)
        extra = self.wire.pending()
        allowed = (Ending.FIN, Ending.RST) if allow_reset else (Ending.FIN,)
        if extra or ending not in allowed:
            what = "a clean close (FIN)" if not allow_reset else "the connection to end"
            summary = f"expected {what}{f' ({why})' if why else ''}, but "
            summary += f"received {escape(extra)!r} first" if extra else f"got {ending.value}"
            raise self.violation(summary, expected=what, actual=extra or ending.value, ending=ending)
        return ending

    def quiet_for(self, seconds: float) -> None:
        """Wait ``seconds`` on the connection, noting (not consuming) anything that arrives."""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.wire.sock.fileno(), select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            if poller.poll(left * 1000):
                return

    def expect_silence(self, seconds: float, why: str = "") -> None:
        """Nothing at all arrives for ``seconds`` (and the connection stays open)."""
        silent_until([self], time.monotonic() + seconds, why or f"for {seconds:.2f} s")

    # ---- failing -------------------------------------------------------------

    def violation(self, summary: str, **details: object) -> Violation:
        details.setdefault("ending", self.wire.ending)
        return Violation(summary, transcripts=[self.wire.transcript], **details)  # type: ignore[arg-type]

    def _mismatch(self, summary: str, why: str, got: bytes | None, expected: bytes) -> Violation:
        """The Violation for a reply that is not the expected one (or none at all)."""
        if why:
            summary += f" ({why})"
        if got is None:
            summary += f", got {self._nothing()}"
        return self.violation(summary, expected=expected, actual=got if got is not None else self.wire.pending())

    def _nothing(self) -> str:
        pending = self.wire.pending()
        if self.wire.ending is not Ending.OPEN:
            return f"{self.wire.ending.value}" + (f" after {escape(pending)}" if pending else "")
        if pending:
            return f"only {escape(pending)} (incomplete) before the deadline"
        return "nothing before the deadline"

    def close(self) -> None:
        self.wire.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def silent_until(probes: Probe | list[Probe], until: float, why: str) -> None:
    """Nothing arrives on any of ``probes`` before ``until`` (monotonic time).

    Bytes first seen only after ``until`` (a late wake-up on a loaded
    machine) are not held against the server, as they may have arrived in
    time; TLS records without application data (session tickets) are no
    reply; and the violation shows what arrived."""
    watched = {p.wire.sock.fileno(): p for p in ([probes] if isinstance(probes, Probe) else probes)}
    poller = select.poll()
    for fd in watched:
        poller.register(fd, select.POLLIN)
    early = [p for p in watched.values() if p.wire.pending()]
    while not early and (left := until - time.monotonic()) > 0:
        ready = poller.poll(left * 1000)
        if time.monotonic() >= until:
            return
        for fd, _ in ready:
            probe = watched[fd]
            if probe.wire.receive_available() or probe.wire.ending is not Ending.OPEN:
                early.append(probe)
    for probe in early:
        got = probe.wire.pending() or probe.wire.ending.value
        raise probe.violation(
            f"{probe.label}: expected nothing yet ({why}), but got {escape(got) if isinstance(got, bytes) else got} "
            f"{max(0.0, until - time.monotonic()):.3f} s before the time",
            expected="nothing yet",
            actual=got,
        )
