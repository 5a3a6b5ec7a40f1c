"""The command line shared by the two mutant catalogues (servers and clients):
``--list``, ``--help``, or a mutant's name followed by the reference program's
own arguments. Standard library only: the client mutants run in minimal images."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

EXIT_USAGE = 2


def catalogue_main(
    argv: Sequence[str] | None,
    *,
    usage: str,
    noun: str,
    catalogue: Mapping[str, Any],
    row: Callable[[Any, int], str],
    launch: Callable[[Any, list[str]], int],
) -> int:
    """``row(mutant, name_width)`` is its ``--list`` line; ``launch(mutant, rest)`` runs it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage, file=sys.stderr)
        return EXIT_USAGE
    if args[0] in ("-h", "--help"):
        print(usage)
        return 0
    if args[0] == "--list":
        width = max(len(name) for name in catalogue)
        for mutant in catalogue.values():
            print(row(mutant, width))
        return 0
    mutant = catalogue.get(args[0])
    if mutant is None:
        print(f"unknown {noun} {args[0]!r}; see --list", file=sys.stderr)
        return EXIT_USAGE
    mutant.apply()
    return launch(mutant, args[1:])
