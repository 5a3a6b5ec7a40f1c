"""The ``sockspec`` command.

- ``sockspec serve ARCH [flags]``: run a reference server (same as
  ``python -m reference_servers ARCH``).
- ``sockspec ping --reference all``: start reference servers locally and
  report whether each answers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reference_servers.cli import ARCHITECTURES
from reference_servers.cli import main as serve

from . import ping

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        # The server's own parser owns its flags, so both spellings behave alike.
        return serve(args[1:], prog="sockspec serve")
    parser = _parser()
    options = parser.parse_args(args)
    if options.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(options.run(options))
    except KeyboardInterrupt:
        print("sockspec: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sockspec", description="Conformance checks for CloudHash/1 servers.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run a reference server (see `sockspec serve --help`)")
    p = commands.add_parser("ping", help="start reference servers and report whether each answers")
    p.add_argument(
        "--reference",
        default="all",
        metavar="ARCH|all",
        help="an architecture, a comma list, or all (default): " + ", ".join(ARCHITECTURES),
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each server (default 10)")
    p.set_defaults(run=ping.run)
    return parser


if __name__ == "__main__":
    sys.exit(main())
