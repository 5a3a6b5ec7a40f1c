"""TLS for the client (CH-CLIENT-14 to CH-CLIENT-18).

The context verifies the chain (``--ca`` or the system store), checks the
name the user dialled (a DNS name, or an IP address against the IP SANs),
sends SNI for names only (Python never sends an IP literal as SNI), and
refuses anything below TLS 1.2. The handshake runs on the non-blocking socket
under a deadline.
"""

from __future__ import annotations

import select
import socket
import ssl
import time

from .status import ClientFailure, Exit


def client_context(ca: str | None) -> ssl.SSLContext:
    """Raises OSError or ssl.SSLError when ``ca`` cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Python 3.13 turned on OpenSSL's X509_STRICT (RFC 5280 details such as the
    # key identifiers) in default contexts; the checks the spec asks for (chain,
    # validity, name) do not depend on it, and leaving it off makes the client
    # behave alike on every Python it runs on.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if ca is not None and not context.get_ca_certs():
        raise ssl.SSLError(f"no CA certificate in {ca}")
    return context


def handshake(sock: socket.socket, context: ssl.SSLContext, server_name: str, timeout: float) -> ssl.SSLSocket:
    """Wrap the connected non-blocking ``sock`` (which it takes over) and run
    the client handshake within ``timeout`` seconds."""
    tls = context.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                readable, writable = [tls], []
            except ssl.SSLWantWriteError:
                readable, writable = [], [tls]
            left = deadline - time.monotonic()
            if left <= 0 or not any(select.select(readable, writable, [], left)):
                raise ClientFailure(Exit.TIMEOUT, f"TLS handshake not completed within {timeout:g} s")
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        raise ClientFailure(Exit.TLS, f"certificate verification failed: {exc.verify_message or exc}") from None
    except ssl.SSLError as exc:
        tls.close()
        raise ClientFailure(Exit.TLS, f"handshake failed: {exc.reason or exc}") from None
    except OSError as exc:  # the server reset or closed the connection
        tls.close()
        raise ClientFailure(Exit.TLS, f"handshake failed: {exc.strerror or exc or 'connection closed'}") from None
    except BaseException:
        tls.close()
        raise
