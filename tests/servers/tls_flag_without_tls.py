"""A server that accepts --tls-port, --cert and --key (so a template written for
the reference servers runs it) but has no TLS: it serves plaintext on --port only,
its READY line has no tls= part, and INFO declares no tls feature. The suite must
dial only what it announced.

    python tests/servers/tls_flag_without_tls.py --port 4481 --tls-port 4482 --cert c.pem --key k.pem
"""

from __future__ import annotations

from line_server_basics import announce, listen, options

if __name__ == "__main__":
    server = listen(options("--tls-port", "--cert", "--key").port)
    announce(server)
    server.serve_forever()
