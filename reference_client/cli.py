"""The command line: ``python -m reference_client [flags] HOST PORT COMMAND [ARGS...]``
(also ``sockspec client``). See the package docstring for the conventions."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from .session import MIN_ABORT_DELAY_MS, Options, Runner
from .status import ClientFailure, Exit

PROG = "python -m reference_client"

DESCRIPTION = """\
The CloudHash/1 reference client (PROTOCOL.md section 17). It resolves HOST
(every A and AAAA record, tried in the resolver's order), connects, optionally
speaks TLS, sends the requests pipelined, and prints each reply on standard
output: the response without its CRLF (line mode) or the frame payload
(framed mode), followed by LF. Diagnostics go to standard error.

Requests: each -c CMD, in order, then COMMAND joined with its ARGS by single
spaces. Flags go before COMMAND: everything after it is an argument."""

EPILOG = """\
exit status:
  0  success: every request got a well-formed reply, none of them an error
  1  the server answered at least one request with -ERR (BUSY and TIMEOUT too)
  2  usage error: bad flags or arguments (nothing is connected)
  3  DNS failure: HOST could not be resolved
  4  all connects failed, or the overall deadline expired while connecting
  5  timeout: no reply byte within the read timeout (or TLS handshake not done)
  6  TLS failure: certificate verification or the handshake failed
     (untrusted CA, expired, wrong name, a server below TLS 1.2)
  7  protocol error: a truncated reply (the connection ended in the middle of a
     reply or before every reply) or a malformed one

defaults: 2 s per connection attempt, a 10 s overall deadline for resolving
and connecting, a 5 s read timeout (extended by the time a SLEEP asked for)."""

# Flags that take a value, so that splitting the command line can skip it.
VALUE_FLAGS = frozenset(
    ("-c", "--command", "--ca", "--servername", "--abort-after", "--connect-timeout", "--deadline", "--timeout")
)
_NUMBER = re.compile(r"-\d")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _milliseconds(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number of milliseconds: {text!r}")
    value = int(text)
    if value < MIN_ABORT_DELAY_MS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_ABORT_DELAY_MS} ms: an urgent byte never follows its SLEEP sooner (CH-CLIENT-21)"
        )
    return value


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        usage="%(prog)s [flags] HOST PORT [COMMAND [ARGS...]]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("host", metavar="HOST", nargs="?", help="a DNS name or an IP address")
    p.add_argument("port", metavar="PORT", nargs="?", help="the TCP port, 1 to 65535")
    p.add_argument("command", metavar="COMMAND", nargs="?", help="a request (optional with -c)")
    p.add_argument("args", metavar="ARGS", nargs="*", default=[], help="its arguments")
    p.add_argument(
        "-c",
        "--command",
        dest="commands",
        action="append",
        default=[],
        metavar="CMD",
        help="a request; repeat to pipeline several (sent together, replies read in order)",
    )
    p.add_argument("--tls", action="store_true", help="implicit TLS (connect to the TLS port)")
    p.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS, handshake after its +OK")
    p.add_argument("--ca", metavar="FILE", help="trust anchors, PEM (default: the system store)")
    p.add_argument(
        "--servername",
        metavar="NAME",
        help="the name to send as SNI and to verify the certificate for (default: HOST)",
    )
    p.add_argument("--framed", action="store_true", help="send FRAMED first, then every request as a frame")
    p.add_argument(
        "--abort-after",
        metavar="MS",
        type=_milliseconds,
        help=f"send one urgent byte MS ms after a SLEEP whose reply is pending (MS >= {MIN_ABORT_DELAY_MS})",
    )
    p.add_argument(
        "--connect-timeout", metavar="S", type=_seconds, default=2.0, help="per connection attempt (default 2)"
    )
    p.add_argument(
        "--deadline", metavar="S", type=_seconds, default=10.0, help="for resolving and connecting (default 10)"
    )
    p.add_argument(
        "--timeout",
        metavar="S",
        type=_seconds,
        default=5.0,
        help="read timeout: the longest wait for the next reply byte (default 5; a SLEEP adds its time)",
    )
    p.add_argument(
        "--happy-eyeballs",
        action="store_true",
        help="overlap connection attempts as RFC 8305 does (next address after 250 ms)",
    )
    p.add_argument(
        "-e",
        "--escapes",
        action="store_true",
        help=r"read \r \n \t \0 \\ and \xHH in requests (binary data, with --framed)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="report addresses, attempts and TLS on stderr")
    return p


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(the flags with their values; HOST, PORT and COMMAND; the ARGS).

    Flags may come anywhere before COMMAND; everything after COMMAND belongs to
    the request, so that ``INCR n -5`` or ``ECHO --x`` need no quoting."""
    flags: list[str] = []
    positionals: list[str] = []
    options_done = False
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if not options_done and token == "--":
            options_done = True
        elif not options_done and token.startswith("-") and token != "-" and not _NUMBER.match(token):
            flags.append(token)
            if token in VALUE_FLAGS and index < len(argv):
                flags.append(argv[index])
                index += 1
        else:
            positionals.append(token)
            if len(positionals) == 3:
                return flags, positionals, list(argv[index:])
    return flags, positionals, []


def unescape(data: bytes) -> bytes:
    out = bytearray()
    index = 0
    simple = {ord("r"): b"\r", ord("n"): b"\n", ord("t"): b"\t", ord("0"): b"\0", ord("\\"): b"\\"}
    while index < len(data):
        byte = data[index]
        if byte != ord("\\"):
            out.append(byte)
            index += 1
            continue
        following = data[index + 1 : index + 2]
        if following and following[0] in simple:
            out += simple[following[0]]
            index += 2
        elif following == b"x" and re.fullmatch(rb"[0-9A-Fa-f]{2}", data[index + 2 : index + 4]):
            out.append(int(data[index + 2 : index + 4], 16))
            index += 4
        else:
            raise UsageError(f"bad escape {data[index : index + 4]!r} (use \\r \\n \\t \\0 \\\\ or \\xHH)")
    return bytes(out)


def parse(argv: Sequence[str], prog: str = PROG) -> Options:
    """Options from a command line; raises UsageError (or SystemExit for --help)."""
    flags, positionals, tail = split_command(argv)
    # The positionals go after "--", so that argparse never mistakes one for a flag.
    args = parser(prog).parse_args([*flags, "--", *positionals])
    if args.host is None or args.port is None:
        raise UsageError("HOST and PORT are required")
    host: str = args.host
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1], as in URLs
    if not host:
        raise UsageError("HOST is empty")
    port_text: str = args.port
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"PORT must be a number from 1 to 65535, not {port_text!r}")
    if args.tls and args.starttls:
        raise UsageError("--tls and --starttls exclude each other (STARTTLS inside TLS gets STATE)")
    if args.servername is not None and not args.servername:
        raise UsageError("--servername is empty")
    texts: list[str] = list(args.commands)
    if args.command is not None:
        texts.append(" ".join([args.command, *args.args, *tail]))
    if not texts:
        raise UsageError("no request: give COMMAND [ARGS...] or -c CMD")
    requests = []
    for number, text in enumerate(texts, 1):
        payload = os.fsencode(text)  # the argument's bytes, as the shell passed them
        if args.escapes:
            payload = unescape(payload)
        if not args.framed:
            if b"\n" in payload:
                raise UsageError(f"request {number} contains LF, which line mode cannot carry (use --framed)")
            if not payload:
                raise UsageError(f"request {number} is empty (an empty line gets no reply; use --framed)")
        requests.append(payload)
    return Options(
        host=host,
        port=int(port_text),
        requests=tuple(requests),
        tls=args.tls,
        starttls=args.starttls,
        ca=args.ca,
        server_name=args.servername,
        framed=args.framed,
        abort_after_ms=args.abort_after,
        connect_timeout=args.connect_timeout,
        deadline=args.deadline,
        read_timeout=args.timeout,
        happy_eyeballs=args.happy_eyeballs,
        verbose=args.verbose,
    )


def _write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # Nobody reads the replies any more; the exit status still counts.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _write_stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    try:
        options = parse(sys.argv[1:] if argv is None else argv, prog)
    except UsageError as exc:
        _write_stderr(f"{prog}: error: {exc} (see --help)")
        return Exit.USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else Exit.USAGE
    try:
        return int(Runner(options, prog, _write_stdout, _write_stderr).run())
    except ClientFailure as failure:
        _write_stderr(failure.line(prog))
        return int(failure.status)
    except KeyboardInterrupt:
        _write_stderr(f"{prog}: interrupted")
        return 130
    except Exception as exc:  # a bug: still one line, never a traceback
        _write_stderr(f"{prog}: internal error: {type(exc).__name__}: {exc}")
        return int(Exit.PROTOCOL)
