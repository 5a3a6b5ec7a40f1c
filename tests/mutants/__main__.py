"""``python -m tests.mutants NAME [server flags...]``: run one mutant server.

Run it from the project root, where ``tests`` is importable (a namespace
package). The flags are the reference server's (``python -m reference_servers
--help``); the architecture is the mutant's own. ``--list`` prints the
catalogue. Nothing but the server's READY line goes to stdout when serving.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import MUTANTS

USAGE = "usage: python -m tests.mutants (--list | NAME [server flags...])"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args[0] == "--list":
        width = max(len(name) for name in MUTANTS)
        for mutant in MUTANTS.values():
            print(f"{mutant.name:<{width}}  {mutant.arch:<22}  {','.join(mutant.expected_areas)}")
        return 0
    name, flags = args[0], args[1:]
    mutant = MUTANTS.get(name)
    if mutant is None:
        print(f"unknown mutant {name!r}; see --list", file=sys.stderr)
        return 2
    mutant.apply()
    from reference_servers.cli import main as serve

    return serve([mutant.arch, *flags], prog=f"python -m tests.mutants {name}")


if __name__ == "__main__":
    sys.exit(main())
