"""``sockspec image build``: the suite's own image, for CI runners without Python.

Placeholder: the command is being written (issue 11)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    image = commands.add_parser("image", help="build the suite's own image (for runners without Python)")
    image.set_defaults(run=_not_yet)


def _not_yet(options: argparse.Namespace) -> int:
    print("sockspec image: not written yet")
    return 2
