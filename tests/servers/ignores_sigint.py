"""A server that never stops on SIGINT: the reference serial server with SIGINT
ignored (a student who handled SIGTERM and forgot Ctrl-C). CH-LIFE-9 must
fail, and say what is left of the server."""

import runpy
import signal
import sys
from pathlib import Path

_install = signal.signal


def _ignoring_sigint(signum: int, handler: object) -> object:
    return _install(signum, signal.SIG_IGN if signum == signal.SIGINT else handler)  # type: ignore[arg-type]


signal.signal = _ignoring_sigint  # type: ignore[assignment]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.argv = ["reference_servers", "serial", *sys.argv[1:]]
runpy.run_module("reference_servers", run_name="__main__")
