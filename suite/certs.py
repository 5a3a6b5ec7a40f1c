"""Test certificates: a trustme CA and a server certificate for the names
the suite connects to. Written to files because servers take paths."""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificateFiles:
    ca: Path  # the CA certificate, PEM
    cert: Path  # the server's chain, PEM
    key: Path  # the server's key, PEM, unencrypted
    ca_object: trustme.CA

    def client_context(
        self,
        minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ) -> ssl.SSLContext:
        """A client context that trusts the test CA, checks host names, and
        offers the versions from ``minimum`` to ``maximum``."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.minimum_version = minimum
        context.maximum_version = maximum
        return context


def make_certificates(directory: Path | None = None, names: tuple[str, ...] = SERVER_NAMES) -> CertificateFiles:
    directory = directory or Path(tempfile.mkdtemp(prefix="sockspec-certs-"))
    ca = trustme.CA(organization_name="sockspec test CA")
    leaf = ca.issue_cert(*names)
    paths = CertificateFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key", ca)
    ca.cert_pem.write_to_path(str(paths.ca))
    leaf.cert_chain_pems[0].write_to_path(str(paths.cert))
    for extra in leaf.cert_chain_pems[1:]:
        extra.write_to_path(str(paths.cert), append=True)
    leaf.private_key_pem.write_to_path(str(paths.key))
    return paths
