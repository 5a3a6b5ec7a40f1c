"""The options that both the pytest plugin and ``sockspec run`` take, defined once.

The plugin registers them with pytest; ``sockspec run`` registers the same
flags with argparse and passes on the ones it was given, so the two spellings
cannot drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["repeat", "value", "switch"]
Section = Literal["targets", "clients", "run"]


@dataclass(frozen=True)
class Option:
    flag: str
    kind: Kind
    section: Section
    help: str
    metavar: str | None = None
    default: Any = None  # the plugin's; `sockspec run` passes a value on only when given
    type: Callable[[str], Any] | None = None
    dest: str | None = None

    @property
    def name(self) -> str:
        return self.dest or self.flag.removeprefix("--").replace("-", "_")

    def definition(self, *, for_plugin: bool) -> dict[str, Any]:
        """Keyword arguments for pytest's ``addoption`` or argparse's ``add_argument``."""
        if self.kind == "switch":
            return {"action": "store_true", "dest": self.name, "help": self.help}
        definition: dict[str, Any] = {"dest": self.name, "metavar": self.metavar, "help": self.help}
        if self.kind == "repeat":
            definition.update(action="append", default=[])
        else:
            definition["default"] = self.default if for_plugin else None
        if self.type is not None:
            definition["type"] = self.type
        return definition

    def passed_on(self, options: argparse.Namespace) -> Iterator[str]:
        """The arguments that give the plugin what ``sockspec run`` was given."""
        value = getattr(options, self.name)
        if self.kind == "switch":
            if value:
                yield self.flag
        elif self.kind == "repeat":
            for item in value:
                yield from (self.flag, item)
        elif value is not None:
            yield from (self.flag, str(value))


SHARED = (
    Option(
        "--reference", "value", "targets", "our reference servers: an architecture, a comma list, or all", "ARCH|all"
    ),
    Option("--cmd", "repeat", "targets", "start a server with this command", "TEMPLATE"),
    Option("--address", "repeat", "targets", "a running server", "HOST:PORT[,TLSPORT]"),
    Option(
        "--image",
        "repeat",
        "targets",
        "our reference servers in a container on IMAGE (docker/bases.toml: bookworm, trixie, all); ARCH or all",
        "IMAGE[:ARCH]",
    ),
    Option(
        "--cmd-image",
        "repeat",
        "targets",
        "run each --cmd inside this image instead of here (docker/bases.toml: bookworm, trixie, all), the working "
        "directory mounted read-only; its server binds {host}",
        "IMAGE",
    ),
    Option(
        "--dockerfile",
        "value",
        "targets",
        "with --cmd-image: build the server's own image from this Dockerfile (FROM ${BASE}) on each image",
        "PATH",
    ),
    Option(
        "--client-cmd",
        "repeat",
        "clients",
        "a client to check: {host} {port} {ca} {cmd} are filled in per scenario ({ca} means it speaks TLS)",
        "TEMPLATE",
    ),
    Option(
        "--client-cmd-for",
        "repeat",
        "clients",
        "the client's command for one optional feature: tls, starttls, framed, urgent",
        "FEATURE=TEMPLATE",
    ),
    Option(
        "--client-cmd-image",
        "value",
        "clients",
        "a Docker image with what --client-cmd needs, for the DNS scenarios (default: sockspec-base:bookworm)",
        "IMAGE",
    ),
    Option("--client-reference", "switch", "clients", "check our reference client, on this machine"),
    Option(
        "--client-image",
        "repeat",
        "clients",
        "check our reference client in its container on IMAGE (docker/bases.toml: bookworm, trixie, all)",
        "IMAGE",
    ),
    Option("--no-dns", "switch", "clients", "no Docker for clients: the DNS scenarios are then UNSUPPORTED"),
    Option(
        "--profile",
        "value",
        "run",
        "the protocol to judge: cloudhash (CloudHash/1, PROTOCOL.md; the default) or resp2 (Redis-compatible,"
        " PROTOCOL-RESP2.md)",
        "PROFILE",
        "cloudhash",
    ),
    Option("--declare", "repeat", "run", "override what INFO declares", "KEY=VALUE"),
    Option("--json", "value", "run", "write the results as JSON", "FILE", dest="sockspec_json"),
    Option("--junit", "value", "run", "write one JUnit testcase per requirement", "FILE", dest="sockspec_junit"),
    Option(
        "--html",
        "value",
        "run",
        "write the HTML report (an index, a page per target and per failure)",
        "DIR",
        dest="sockspec_html",
    ),
    Option(
        "--name",
        "repeat",
        "targets",
        "a name for a --cmd or --address target in the reports (the k-th --name names the k-th of them)",
        "NAME",
    ),
    Option(
        "--shard",
        "value",
        "run",
        "run only share I of N of the checks (1 <= I <= N), e.g. one CI job of N; `sockspec merge` joins them",
        "I/N",
    ),
    Option(
        "--only",
        "value",
        "run",
        "requirement IDs to check (any case): CH-FRAME-3, 'CH-TLS-*,CH-LIFE-*'; `sockspec list` shows them",
        "PATTERN",
    ),
    Option("--seed", "value", "run", "seed for Hypothesis and the suite's own choices (reproduces a run)", type=int),
    Option("--ca", "value", "run", "CA certificate that signed an --address target's certificate", "FILE"),
    Option(
        "--tls-hostname",
        "value",
        "run",
        "the name to verify on --address targets (default localhost)",
        "NAME",
        "localhost",
    ),
    Option(
        "--ready-timeout",
        "value",
        "run",
        "seconds a started server has to print READY (or accept) (default 15)",
        "SECONDS",
        15.0,
        type=float,
    ),
    Option(
        "--area-by-area",
        "switch",
        "run",
        "check the spec's areas in order (FRAME, CMD, ERR, ...) and stop after the first area with a FAIL",
    ),
    Option(
        "--allow-unchecked",
        "switch",
        "run",
        "a MUST the run could not check (no Docker, an --address target) does not fail the run (exit 0, not 2)",
    ),
    Option(
        "--robust-scale",
        "value",
        "run",
        "grow the ROBUST area's attacks (connections, requests, rounds) by this factor, for a soak (default 1)",
        "FACTOR",
        1.0,
        type=float,
    ),
    Option(
        "--overlap",
        "value",
        "run",
        "how many checks that wait out the server's timers (idle timeouts, the shutdown deadline) each worker runs"
        " beside its current check (default 2, which saves about a third; 0 runs every check in turn)",
        "N",
        2,
        type=int,
    ),
    Option(
        "--check-timeout",
        "value",
        "run",
        "seconds for each socket operation (default 5)",
        "SECONDS",
        5.0,
        type=float,
    ),
)
