"""The CloudHash/1 reference client (PROTOCOL.md section 17), standard library only.

    python -m reference_client [flags] HOST PORT COMMAND [ARGS...]
    sockspec client [flags] HOST PORT COMMAND [ARGS...]      # the same

It is an independent implementation of the client side of the spec: it imports
nothing from the suite or the reference servers.

- Resolves HOST with getaddrinfo (every A and AAAA record) and tries the
  addresses in the resolver's order, each attempt a non-blocking connect with
  its own timeout (``--connect-timeout``, 2 s), all of it under an overall
  deadline that counts the resolution too (``--deadline``, 10 s);
  ``--happy-eyeballs`` overlaps the attempts as RFC 8305 does.
- Waits at most the read timeout (``--timeout``, 5 s) for each reply byte, with
  select on a non-blocking socket; a SLEEP's reply gets the time it asked for
  on top.
- ``--tls`` (implicit TLS) or ``--starttls`` (the handshake starts only after
  the complete +OK): verifies the chain (``--ca FILE`` or the system store),
  checks HOST (a name, or an IP address against IP SANs; ``--servername``
  overrides), sends SNI for names only, and requires TLS 1.2 or later.
- ``--framed`` sends FRAMED, reads its +OK as a line, then sends each request
  as a frame (4-byte big-endian length) and reads each reply as a frame.
- ``--abort-after MS`` sends one urgent byte (MSG_OOB, on the TCP socket, below
  TLS too) MS ms (at least 100) after a SLEEP whose reply is still pending; at
  most one per SLEEP, never two outstanding.
- ``-c CMD``, repeated, pipelines requests (sent together, replies read in
  order); COMMAND and ARGS, joined with single spaces, come last.

Output: each reply on standard output, in order, as the response without its
CRLF (line mode) or the frame payload (framed mode), followed by LF. The +OK of
the client's own FRAMED or STARTTLS is not printed. Diagnostics go to standard
error, one line each.

Exit status:

    0  success: every request got a well-formed reply, none of them an error
    1  at least one -ERR reply (an unsolicited BUSY or TIMEOUT included; a final
       -ERR followed by the server's close is 1, even with requests unanswered)
    2  usage error: bad flags or arguments (nothing is connected)
    3  DNS failure: NXDOMAIN, no A or AAAA record, a resolver error, or no answer
       from the resolver before the deadline
    4  all connects failed: every address refused, unreachable or timed out, or
       the overall deadline expired
    5  timeout: no reply byte within the read timeout (also a TLS handshake
       that does not finish within it)
    6  TLS failure: certificate verification failed (untrusted CA, expired, wrong
       name) or the handshake failed (a server below TLS 1.2, a close or reset)
    7  protocol error: a truncated reply (EOF or reset in the middle of a reply,
       or before every request has its reply) or a malformed one (not section 5)

A failure with status 3 to 7 ends the run at once and decides the status. The
close after +BYE (QUIT's reply, a final message) is no truncation either: the
requests after QUIT go unanswered and the status is 0 (1 after an -ERR). A
refused STARTTLS prints its -ERR, exits 1 and sends nothing more: never a
request in plaintext.
"""

from .cli import main
from .status import Exit

__all__ = ["Exit", "main"]
