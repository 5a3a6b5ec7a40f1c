"""The run's Docker environment: built and swept by the controller, attached
to by xdist workers.

The controller builds the images, creates the run's networks and starts the
DNS server; workers attach to them by name. Everything is swept when the run
ends, also on Ctrl-C and SIGTERM. Where only clients on this machine want
Docker (for the DNS scenarios), it is not ``required``: without it those
scenarios are UNSUPPORTED with the reason, and the run goes on.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import DockerUnavailable
from .environment import DockerEnvironment, UserTarget
from .images import load_bases


class DockerSetUpFailed(Exception):
    """Docker was required (--image, --client-image) and could not be set up: exit 2."""


@dataclass
class DockerForRun:
    environment: DockerEnvironment | None
    reason: str = ""  # why there is none, for the checks that needed it


def set_up(
    *,
    image_bases: list[str],
    client_bases: list[str],
    dns: bool,
    worker: dict[str, Any] | None,
    log: Callable[[str], None],
    user_targets: Sequence[tuple[str, str, Path | None]] = (),
) -> DockerForRun:
    """``user_targets``: (target name, base key, Dockerfile or None) for each --cmd run in an image."""
    required = bool(image_bases or client_bases or user_targets)
    if worker is not None:
        reason = str(worker.get("sockspec_docker_reason", ""))
        if "sockspec_docker" not in worker:
            return DockerForRun(None, reason)
    try:
        if worker is not None:
            environment = DockerEnvironment.attach(worker["sockspec_docker"])
        else:
            known = load_bases()
            environment = DockerEnvironment.create(
                [known[key] for key in image_bases],
                log=log,
                client_bases=[known[key] for key in client_bases],
                dns_base=next(iter(known.values())) if dns else None,
                user_targets=[UserTarget(name, known[key], dockerfile) for name, key, dockerfile in user_targets],
            )
    except Exception as error:
        if required:
            if isinstance(error, DockerUnavailable):
                raise DockerSetUpFailed(f"--image, --cmd-image and --client-image need Docker: {error}") from None
            raise DockerSetUpFailed(f"setting up Docker failed: {error}") from None
        text = str(error).strip()
        return DockerForRun(None, text.splitlines()[0][:300] if text else type(error).__name__)
    atexit.register(environment.close)
    return DockerForRun(environment)
