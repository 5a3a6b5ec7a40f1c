"""What the suite knows about a client under test: its command templates,
one per optional feature it offers, and where it runs."""

from __future__ import annotations

import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

from ..requirements import OPTIONAL_FEATURES

PLACEHOLDERS = ("host", "port", "ca", "cmd")
MAIN = ""  # the template for everything without a feature of its own
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClientSpec:
    name: str
    templates: dict[str, str]  # MAIN or a feature -> a command line with {placeholders}
    image: str | None = None  # a base key: the reference client's image runs every scenario
    container_image: str | None = None  # where the templates run for DNS scenarios (default: the first base)
    env: dict[str, str] = field(default_factory=dict)
    described: str = ""

    def template(self, feature: str | None = None) -> str | None:
        """The command for a scenario of ``feature`` (None: no feature)."""
        if feature is None:
            return self.templates.get(MAIN)
        if feature in self.templates:
            return self.templates[feature]
        if feature == "tls" and "{ca}" in self.templates.get(MAIN, ""):
            return self.templates[MAIN]  # a template that takes a CA speaks TLS
        return None

    @property
    def tls_inferred(self) -> bool:
        """TLS is assumed only because the one template takes {ca}."""
        return "tls" not in self.templates and "{ca}" in self.templates.get(MAIN, "")

    def features(self) -> list[str]:
        return sorted(f for f in OPTIONAL_FEATURES if self.template(f) is not None)

    def describe(self) -> str:
        if self.described:
            return self.described
        words = [
            f"--client-cmd {shlex.quote(value)}" if key == MAIN else f"--client-cmd-for {shlex.quote(f'{key}={value}')}"
            for key, value in self.templates.items()
        ]
        if self.container_image:
            words.append(f"--client-cmd-image {shlex.quote(self.container_image)}")
        return " ".join(words)


def check_template(template: str, required: tuple[str, ...] = ()) -> None:
    """ValueError for an unknown placeholder, a stray brace, bad quoting, or a
    ``required`` placeholder missing."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        shlex.split(template)
    except ValueError as error:
        raise ValueError(f"bad client template {template!r}: {error}") from None
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} in a client template; known: {', '.join(PLACEHOLDERS)}")
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(f"a client template needs {{{missing[0]}}}: {template!r}")


def fill(template: str, *, host: str, port: str, ca: str, cmd: list[str]) -> list[str]:
    """The command line. An unquoted {cmd} becomes one word per request word;
    a quoted one, as in '{cmd}', stays one word (the shell's rules)."""
    return shlex.split(template.format(host=host, port=port, ca=ca, cmd=" ".join(cmd)))


REFERENCE_FLAGS = {
    MAIN: "",
    "tls": "--tls --ca {ca} ",
    "starttls": "--starttls --ca {ca} ",
    "framed": "--framed ",
    "urgent": "--abort-after 200 ",
}


def reference_spec(image: str | None = None, program: str = "python3 -m reference_client") -> ClientSpec:
    """Our reference client, on this machine (image None) or in its image;
    ``program`` runs something with the same flags instead (a mutant)."""
    templates = {feature: f"{program} {flags}{{host}} {{port}} {{cmd}}" for feature, flags in REFERENCE_FLAGS.items()}
    if image is not None:
        return ClientSpec(f"client@{image}", templates, image=image, described=f"--client-image {image}")
    # python3 finds the package through PYTHONPATH, here and in a container with the project mounted.
    return ClientSpec(
        "client-reference", templates, env={"PYTHONPATH": str(PROJECT_ROOT)}, described="--client-reference"
    )
