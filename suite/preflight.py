"""The first contact with each target, before any check runs: start it once
(or dial it, for --address), read its READY line and INFO, and either say in
one line what it announced or explain in one paragraph why nothing can be
checked. A target that cannot start costs the readiness timeout once, not
once per check."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .certs import make_certificates
from .configuration import RunSettings
from .targets.factory import TargetPool


def check_targets(settings: RunSettings, docker: Any, say: Callable[[str], None] = print) -> str | None:
    """None when every target answered; else the explanation to print before exiting 2."""
    # Our images are built and checked by the project's own tests; a user's command or address is not.
    names = [name for name, spec in settings.specs.items() if spec.image is None]
    if not names:
        return None
    with tempfile.TemporaryDirectory(prefix="sockspec-preflight-") as scratch:
        certs = make_certificates(Path(scratch))
        pool = TargetPool(
            {name: settings.specs[name] for name in names},
            certs,
            settings.overrides,
            timeout=settings.timeout,
            ready_timeout=settings.ready_timeout,
            docker=docker,
            profile=settings.profile,
        )
        for name in names:
            result = pool.preflight(name)
            if result.problem is not None:
                reason = result.problem.removeprefix(f"{name}: ")
                return _explain(name, settings.specs[name].describe(), reason, settings.profile)
            say(f"sockspec: {name}: {result.summary()}")
    return None


# Where to read how a target announces itself, per profile.
ANNOUNCING = {
    "cloudhash": "`sockspec explain CH-LIFE-1` says what a server must print",
    "resp2": "PROTOCOL-RESP2.md, section 1: the suite waits for {port} to accept, then asks INFO",
}


def _explain(name: str, described: str, reason: str, profile: str = "cloudhash") -> str:
    return "\n".join(
        [
            f"sockspec: the target {name!r} cannot be checked: it did not start and answer.",
            f"  target: {described}",
            *(f"  {line}" for line in reason.splitlines()),
            f"  Nothing was checked. Fix this first ({ANNOUNCING[profile]}),",
            "  then run again.",
        ]
    )
