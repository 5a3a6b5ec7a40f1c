"""Shared by the Docker tests: skip without an engine, except in CI."""

from __future__ import annotations

import os
from typing import Any

import pytest

from suite.docker.engine import DockerUnavailable, client


def docker_or_skip() -> Any:
    """The engine; without one the test skips, but in CI (CI=true) it fails,
    so that CI can never go green without the Docker tests."""
    try:
        return client()
    except DockerUnavailable as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but Docker is unavailable: {error}")
        pytest.skip(f"Docker is unavailable: {error}")
