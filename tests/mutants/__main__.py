"""``python -m tests.mutants NAME [server flags...]``: run one mutant server.

Run it from the project root, where ``tests`` is importable (a namespace
package). The flags are the reference server's (``python -m reference_servers
--help``); the architecture is the mutant's own. ``--list`` prints the
catalogue. Nothing but the server's READY line goes to stdout when serving.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.mutant_catalogue import catalogue_main

from . import MUTANTS, Mutant

USAGE = "usage: python -m tests.mutants (--list | NAME [server flags...])"


def main(argv: Sequence[str] | None = None) -> int:
    return catalogue_main(argv, usage=USAGE, noun="mutant", catalogue=MUTANTS, row=_row, launch=_launch)


def _row(mutant: Mutant, width: int) -> str:
    return f"{mutant.name:<{width}}  {mutant.arch:<22}  {','.join(mutant.expected_areas)}"


def _launch(mutant: Mutant, flags: list[str]) -> int:
    from reference_servers.cli import main as serve

    return serve([mutant.arch, *flags], prog=f"python -m tests.mutants {mutant.name}")


if __name__ == "__main__":
    sys.exit(main())
