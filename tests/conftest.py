"""Shared fixtures for the project's own tests."""

from __future__ import annotations

import pytest

from suite.certs import CertificateFiles, make_certificates


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A throwaway CA and a server certificate for localhost, 127.0.0.1 and ::1."""
    return make_certificates(tmp_path_factory.mktemp("tls"))
