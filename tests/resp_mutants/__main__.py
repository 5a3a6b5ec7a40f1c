"""``python -m tests.resp_mutants NAME [server flags...]``: run one RESP mutant
server (the flags are tests/servers/resp_student.py's); ``--list`` prints the
catalogue. Run it from the project root, where ``tests`` is importable."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tests.mutant_catalogue import catalogue_main
from tests.servers import resp_student

from . import MUTANTS, Mutant

USAGE = "usage: python -m tests.resp_mutants (--list | NAME [server flags...])"


def main(argv: Sequence[str] | None = None) -> int:
    return catalogue_main(argv, usage=USAGE, noun="RESP mutant", catalogue=MUTANTS, row=_row, launch=_launch)


def _row(mutant: Mutant, width: int) -> str:
    return f"{mutant.name:<{width}}  {','.join(mutant.requirements):<22}  {mutant.description}"


def _launch(mutant: Mutant, flags: list[str]) -> int:
    return resp_student.main(flags)


if __name__ == "__main__":
    sys.exit(main())
