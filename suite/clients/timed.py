"""Run one client command with a deadline and report what it did, as JSON.

Standard library only: the same code runs the client on this machine and,
as ``python3 -c SOURCE SPEC``, inside a client container, so that the time
measured never includes ``docker exec`` itself. The client gets its own
process group, and the whole group is killed at the deadline: a hung client
gives a result, never a hung run.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def run(
    argv: list[str],
    deadline: float,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    *,
    started: Callable[[int], None] | None = None,
    ended: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """{"status", "elapsed", "hung", "stdout", "stderr" (base64), "error"}.

    ``started(pid)`` and ``ended(pid)``, when given, hear of the client's
    process group (the suite's record of every group it starts)."""
    environment = dict(os.environ)
    environment.update(env or {})
    began = time.monotonic()
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=environment,
            start_new_session=True,
        )
    except OSError as error:
        return {"status": None, "elapsed": 0.0, "hung": False, "stdout": "", "stderr": "", "error": str(error)}
    if started is not None:
        started(child.pid)
    hung = False
    try:
        out, err = child.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        hung = True
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = child.communicate()
    except BaseException:  # an interrupt (Ctrl-C, SIGTERM) while waiting: the group goes with it
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.wait()
        raise
    elapsed = time.monotonic() - began
    try:  # anything the client left behind in its group goes too
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if ended is not None:
        ended(child.pid)
    return {
        "status": None if hung else child.returncode,
        "elapsed": elapsed,
        "hung": hung,
        "stdout": base64.b64encode(out).decode(),
        "stderr": base64.b64encode(err).decode(),
        "error": "",
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(run(spec["argv"], spec["deadline"], spec.get("cwd"), spec.get("env"))))
