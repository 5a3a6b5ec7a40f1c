"""``sockspec bench``: the command line (see suite.bench)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    """``bench`` under ``sockspec``'s subcommands."""
    bench = commands.add_parser("bench", help="measure throughput, latency and memory per architecture; C10K")
    bench.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    print("sockspec bench: not built yet", file=sys.stderr)
    return EXIT_USAGE
