"""``sockspec image``: the suite's own image, for CI runners without Python.

- ``sockspec image build [--base KEY]`` builds ``sockspec-suite:<KEY>`` (the
  suite installed on a base from docker/bases.toml) and prints its name on
  stdout, alone, so that ``IMAGE=$(sockspec image build)`` works; progress goes
  to stderr.
- ``sockspec image list`` shows the project's images (those labelled
  ``org.sockspec.project=sockspec``) with their labels.

The building itself is ``suite.docker.images``'s; this module only reads the
command line, talks to the user and maps failures to exit codes. It needs a
source checkout (docker/bases.toml, the Dockerfiles and the sources the
wheel is built from), which an editable install is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

from .docker import engine as docker_engine
from .docker import images

EXIT_OK, EXIT_USAGE = 0, 2
NO_BASES = f"{images.DOCKER_DIR / 'bases.toml'} is missing: build from a source checkout of sockspec"


def add_parser(commands: Any) -> None:
    """``image build`` and ``image list`` under ``sockspec``'s subcommands."""
    image = commands.add_parser("image", help="build the suite's own image (for CI runners without Python)")
    actions = image.add_subparsers(dest="image_command", metavar="ACTION", parser_class=type(image), required=True)
    known = _known_bases()
    default = next(iter(known), None)
    build = actions.add_parser(
        "build",
        help="build sockspec-suite:<base> and print its name",
        description=(
            "Build sockspec-suite:<base>: the suite installed on a Debian base from docker/bases.toml, "
            "for `docker run --network NET sockspec-suite:<base> sockspec run --address HOST:PORT`. "
            "The image name is printed on stdout, progress on stderr. Needs a Docker engine."
        ),
    )
    build.add_argument(
        "--base",
        type=_base_key,
        default=default,
        metavar="KEY",
        help=(
            f"a base from docker/bases.toml: {', '.join(known)} (default: {default}, the first listed)"
            if known
            else "a base from docker/bases.toml (not found: build from a source checkout of sockspec)"
        ),
    )
    build.set_defaults(run=build_image)
    listing = actions.add_parser("list", help="the project's images (labelled org.sockspec.project=sockspec)")
    listing.set_defaults(run=list_images)


def _known_bases() -> dict[str, images.Base]:
    # An installed wheel (the suite image itself) has no docker/ folder; its
    # other commands must still work, so a missing bases.toml is no error here.
    try:
        return images.load_bases()
    except FileNotFoundError:
        return {}


def _base_key(text: str) -> str:
    known = _known_bases()
    if not known:
        raise argparse.ArgumentTypeError(NO_BASES)
    if text not in known:
        raise argparse.ArgumentTypeError(f"unknown base {text!r}; known: {', '.join(known)}")
    return text


def _progress(line: str) -> None:
    print(f"sockspec image: {line}", file=sys.stderr, flush=True)


def build_image(options: argparse.Namespace) -> int:
    """Build the suite image on ``options.base``; 0 and its name on stdout, or 2 and why not."""
    if options.base is None:  # no bases.toml, so no default base either
        print(f"sockspec image build: {NO_BASES}", file=sys.stderr)
        return EXIT_USAGE
    try:
        engine = docker_engine.client()
    except docker_engine.DockerUnavailable as error:
        print(f"sockspec image build: needs a Docker engine: {error}", file=sys.stderr)
        return EXIT_USAGE
    base = images.load_bases()[options.base]
    started = time.monotonic()
    replaced = _image_id(engine, f"{images.SUITE_REPOSITORY}:{base.key}")
    try:
        with _stdout_to_stderr():
            tag = images.build_suite_image(engine, base, log=_progress)
    except Exception as error:
        # pip, debootstrap or the engine failed: the reason (and the build's
        # last lines) in one report, not a traceback.
        print(f"sockspec image build: building {images.SUITE_REPOSITORY}:{base.key} failed: {error}", file=sys.stderr)
        return EXIT_USAGE
    built = engine.images.get(tag)
    _progress(f"{tag}: {built.attrs.get('Size', 0) / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    if replaced is not None and replaced != built.id:
        _remove_if_untagged(engine, replaced)
    print(tag, flush=True)
    return EXIT_OK


def _image_id(engine: Any, name: str) -> str | None:
    try:
        return str(engine.images.get(name).id)
    except Exception:  # docker.errors.ImageNotFound: nothing built yet
        return None


def _remove_if_untagged(engine: Any, image_id: str) -> None:
    """The image a rebuild took the tag from, unless something still names it:
    each rebuild would otherwise leave one more untagged image of the project
    behind. One that a container still uses stays (the engine refuses)."""
    with contextlib.suppress(Exception):
        if not engine.images.get(image_id).tags:
            engine.images.remove(image_id)
            _progress(f"removed the image it replaces ({image_id.removeprefix('sha256:')[:12]})")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While the build runs, whatever writes to stdout (pip, our own prints)
    goes to stderr instead, at the file-descriptor level so that child
    processes follow: stdout then carries the image name and nothing else."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def list_images(options: argparse.Namespace) -> int:
    """The images labelled as the project's, newest first, with their labels."""
    try:
        engine = docker_engine.client()
    except docker_engine.DockerUnavailable as error:
        print(f"sockspec image list: needs a Docker engine: {error}", file=sys.stderr)
        return EXIT_USAGE
    found = engine.images.list(filters={"label": f"{docker_engine.PROJECT_LABEL}={docker_engine.PROJECT}"})
    table = Table(title=f"images labelled {docker_engine.PROJECT_LABEL}={docker_engine.PROJECT}")
    for column in ("image", "id", "created", "size", "labels"):
        table.add_column(column)
    for image in sorted(found, key=lambda image: image.attrs.get("Created", ""), reverse=True):
        labels = {k: v for k, v in (image.labels or {}).items() if k != docker_engine.PROJECT_LABEL}
        table.add_row(
            ", ".join(image.tags) or "<untagged>",
            image.short_id.removeprefix("sha256:"),
            image.attrs.get("Created", "")[:19].replace("T", " "),
            f"{image.attrs.get('Size', 0) / 1e6:.0f} MB",
            ", ".join(f"{k}={v[:16]}" for k, v in sorted(labels.items())) or "-",
        )
    Console(width=160).print(table)
    return EXIT_OK
