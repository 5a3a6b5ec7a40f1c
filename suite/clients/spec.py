"""What the suite knows about a client under test: its command templates,
one per optional feature it offers, and where it runs."""

from __future__ import annotations

import re
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


_WORD = re.compile(r"""(?:[^\s'"]|'[^']*'|"[^"]*")+""")


def with_requests(template: str, requests: list[str]) -> str:
    """The template with several requests in place of its one {cmd}.

    A template takes several when {cmd} is a flag's value: the word before
    the one holding {cmd} is a flag (``-c {cmd}``, ``-c '{cmd}'``), or that
    word is a flag itself (``--command={cmd}``). That flag and its value are
    repeated once per request, in order, with the template's own quoting.
    ValueError with the reason when the template cannot take several."""
    words = list(_WORD.finditer(template))
    holding = [index for index, word in enumerate(words) if "{cmd}" in word.group()]
    if len(holding) != 1 or template.count("{cmd}") != 1:
        raise ValueError("the client template has no single {cmd} to repeat for several requests")
    index = holding[0]
    word = words[index]
    if word.group().lstrip("'\"").startswith("-"):
        start = word.start()
    elif index > 0 and words[index - 1].group().startswith("-"):
        start = words[index - 1].start()
    else:
        raise ValueError(
            "the client template takes one request: {cmd} is not the value of a flag "
            "(write it as -c '{cmd}' or --command='{cmd}' if the client takes several that way)"
        )
    segment = template[start : word.end()]
    escaped = [request.replace("{", "{{").replace("}", "}}") for request in requests]
    repeated = " ".join(segment.replace("{cmd}", request) for request in escaped)
    return template[:start] + repeated + template[word.end() :]


REFERENCE_FLAGS = {
    MAIN: "",
    "tls": "--tls --ca {ca} ",
    "starttls": "--starttls --ca {ca} ",
    "framed": "--framed ",
    "urgent": "--abort-after 200 ",
}


def reference_template(program: str, flags: str) -> str:
    """The reference client's command line for a scenario: the requests as
    -c flags, so that a scenario can pass several (with_requests)."""
    return f"{program} {flags}{{host}} {{port}} -c '{{cmd}}'"


def reference_spec(image: str | None = None, program: str = "python3 -m reference_client") -> ClientSpec:
    """Our reference client, on this machine (image None) or in its image;
    ``program`` runs something with the same flags instead (a mutant)."""
    templates = {feature: reference_template(program, flags) for feature, flags in REFERENCE_FLAGS.items()}
    if image is not None:
        return ClientSpec(f"client@{image}", templates, image=image, described=f"--client-image {image}")
    # python3 finds the package through PYTHONPATH, here and in a container with the project mounted.
    return ClientSpec(
        "client-reference", templates, env={"PYTHONPATH": str(PROJECT_ROOT)}, described="--client-reference"
    )
