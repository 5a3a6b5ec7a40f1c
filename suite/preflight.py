"""The first contact with each target, before any check runs: start it once
(or dial it, for --address), read its READY line and INFO, and either say in
one line what it announced or explain in one paragraph why nothing can be
checked. A target that cannot start costs the readiness timeout once, not
once per check."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .certs import make_certificates
from .configuration import RunSettings
from .probe import HarnessError
from .targets.factory import TargetPool


def check_targets(settings: RunSettings, docker: Any, say: Any = print) -> str | None:
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
        )
        try:
            for name in names:
                try:
                    target = pool.shared(name)
                except HarnessError as error:
                    return _explain(name, settings.specs[name].describe(), str(error))
                say(f"sockspec: {name}: {_announced(target)}")
        finally:
            pool.close()
    return None


def _announced(target: Any) -> str:
    endpoint = target.endpoint
    where = f"{endpoint.host}:{endpoint.port}" + (f", TLS on {endpoint.tls_port}" if endpoint.tls_port else "")
    declared = " ".join(f"{key}={value}" for key, value in target.declared.pairs.items())
    problem = getattr(target.declared, "info_problem", None)
    info = f"INFO: {declared}" if declared else "INFO declared nothing"
    return f"answers at {where}; {info}" + (f" (warning: {problem})" if problem else "")


def _explain(name: str, described: str, reason: str) -> str:
    return "\n".join(
        [
            f"sockspec: the target {name!r} cannot be checked: it did not start and answer.",
            f"  target: {described}",
            *(f"  {line}" for line in reason.splitlines()),
            "  Nothing was checked. Fix this first (`sockspec explain CH-LIFE-1` says what a server must print),",
            "  then run again.",
        ]
    )
