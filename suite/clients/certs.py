"""The certificates the suite's servers show a client under test: one good
chain, and one broken in each way a client must notice."""

from __future__ import annotations

import datetime
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import trustme

from .zone import OTHER

KINDS = ("good", "wrong-name", "expired", "untrusted")


@dataclass(frozen=True)
class ClientCertificates:
    directory: Path
    ca: Path  # the trust anchor handed to the client ({ca})
    chains: dict[str, tuple[Path, Path]]  # kind -> (certificate chain, key)

    def server_context(self, kind: str = "good", *, tls_1_1_only: bool = False) -> ssl.SSLContext:
        chain, key = self.chains[kind]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)
        if tls_1_1_only:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.1 is the point
                # OpenSSL 3 will not negotiate TLS 1.1 at its default security level.
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
        return context


def make_client_certificates(directory: Path, names: list[str]) -> ClientCertificates:
    """``names``: every DNS name and IP address the good chain must be valid for."""
    directory.mkdir(parents=True, exist_ok=True)
    trusted = trustme.CA(organization_name="sockspec client-check CA")
    rogue = trustme.CA(organization_name="sockspec untrusted CA")
    now = datetime.datetime.now(datetime.UTC)
    leaves = {
        "good": trusted.issue_cert(*names),
        "wrong-name": trusted.issue_cert(OTHER),
        "expired": trusted.issue_cert(
            *names, not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
        ),
        "untrusted": rogue.issue_cert(*names),
    }
    ca = directory / "ca.pem"
    trusted.cert_pem.write_to_path(str(ca))
    chains = {}
    for kind, leaf in leaves.items():
        chain, key = directory / f"{kind}.pem", directory / f"{kind}.key"
        leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))
        leaf.private_key_pem.write_to_path(str(key))
        chains[kind] = (chain, key)
    return ClientCertificates(directory, ca, chains)
