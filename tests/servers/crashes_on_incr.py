"""The guide's skeleton with a student's crash: the first INCR takes the whole
server down (status 3, a traceback on stderr), as an unhandled error in a
request handler that calls os._exit, or a segfault in a C server, would.
Everything before that works, so the suite must name the exit as the root of
what fails after it.

    python tests/servers/crashes_on_incr.py --port 4481
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

SKELETON = Path(__file__).resolve().parents[2] / "docs" / "skeleton" / "server.py"

spec = importlib.util.spec_from_file_location("skeleton", SKELETON)
assert spec is not None and spec.loader is not None
skeleton = importlib.util.module_from_spec(spec)
spec.loader.exec_module(skeleton)
reference_execute = skeleton.execute


def execute(payload: bytes) -> bytes:
    if payload.split(b" ", 1)[0].upper() == b"INCR":
        sys.stderr.write('Traceback (most recent call last):\n  File "server.py", line 91, in execute\n')
        sys.stderr.write("ValueError: invalid literal for int() with base 10\n")
        sys.stderr.flush()
        os._exit(3)
    return bytes(reference_execute(payload))


skeleton.execute = execute

if __name__ == "__main__":
    skeleton.main()
