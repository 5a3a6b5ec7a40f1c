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

from . import CLIENT_MUTANTS

USAGE = "usage: python3 -m tests.client_mutants (--list | NAME [client flags...] HOST PORT COMMAND [ARGS...])"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args[0] == "--list":
        width = max(len(name) for name in CLIENT_MUTANTS)
        for mutant in CLIENT_MUTANTS.values():
            print(f"{mutant.name:<{width}}  {','.join(mutant.requirements)}")
        return 0
    name, client_args = args[0], args[1:]
    mutant = CLIENT_MUTANTS.get(name)
    if mutant is None:
        print(f"unknown client mutant {name!r}; see --list", file=sys.stderr)
        return 2
    mutant.apply()
    from reference_client.cli import main as client

    return client(client_args, prog=f"python3 -m tests.client_mutants {name}")


if __name__ == "__main__":
    sys.exit(main())
