"""``python3 -m tests.client_mutants NAME [client flags...] HOST PORT COMMAND [ARGS...]``:
run one mutant client.

Run it from the project root, where ``tests`` is importable (a namespace
package). The arguments are the reference client's (``python3 -m
reference_client --help``); the exit status is the client's. ``--list`` prints
the catalogue: each mutant's name and the requirements it breaks.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.mutant_catalogue import catalogue_main

from . import CLIENT_MUTANTS, ClientMutant

USAGE = "usage: python3 -m tests.client_mutants (--list | NAME [client flags...] HOST PORT COMMAND [ARGS...])"


def main(argv: Sequence[str] | None = None) -> int:
    return catalogue_main(argv, usage=USAGE, noun="client mutant", catalogue=CLIENT_MUTANTS, row=_row, launch=_launch)


def _row(mutant: ClientMutant, width: int) -> str:
    return f"{mutant.name:<{width}}  {','.join(mutant.requirements)}"


def _launch(mutant: ClientMutant, client_args: list[str]) -> int:
    from reference_client.cli import main as client

    return client(client_args, prog=f"python3 -m tests.client_mutants {mutant.name}")


if __name__ == "__main__":
    sys.exit(main())
