"""What a run was asked to do: the options read once, checked before anything
runs, and turned into targets, clients and settings.

Both spellings read options through here: the plugin with pytest's
``config.getoption``, ``sockspec run`` with its argparse namespace, so a bad
option gets the same one-line reason (and exit 2) from either, before a
server is started. Imports nothing from pytest.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import os
import random
import re
import shlex
import shutil
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import profiles, requirements
from .clients.spec import MAIN, ClientSpec, check_template
from .clients.spec import reference_spec as client_reference_spec
from .docker.images import resolve_bases
from .requirements import OPTIONAL_FEATURES
from .targets.factory import PLACEHOLDERS, TargetSpec, parse_address, reference_spec
from .targets.reference import resolve_architectures

GetOption = Callable[[str], Any]

# What --declare may override (PROTOCOL.md, CH-CMD-13), and what each value must look like.
POSITIVE_KEYS = ("concurrency", "max_connections", "max_line", "max_frame")
DECLARABLE = ("proto", "arch", *POSITIVE_KEYS, "overflow", "idle_timeout_ms", "features")
# RESP2 (PROTOCOL-RESP2.md, section 1): what a Redis-compatible server's INFO or --declare says.
DECLARABLE_BY_PROFILE = {profiles.DEFAULT: DECLARABLE, "resp2": ("timeout", "maxclients", "features")}


class UsageProblem(Exception):
    """A bad option: one line for the user, exit 2."""


@dataclass
class RunSettings:
    specs: dict[str, TargetSpec]
    overrides: dict[str, str]
    strict: bool
    seed: int
    only: list[str]
    timeout: float
    ready_timeout: float = 15.0
    area_by_area: bool = False
    allow_unchecked: bool = False  # a MUST that could not be checked does not fail the run
    target_args: str = ""  # the options that name the targets, for re-run lines
    image_bases: list[str] = field(default_factory=list)
    clients: dict[str, ClientSpec] = field(default_factory=dict)
    client_bases: list[str] = field(default_factory=list)
    dns: bool = False  # clients are checked and Docker may be used for the DNS scenarios
    shard: tuple[int, int] | None = None  # --shard I/N: this run checks share I of N
    robust_scale: float = 1.0  # --robust-scale: how much larger than the default the ROBUST attacks are
    profile: str = profiles.DEFAULT  # --profile: the protocol judged (suite.profiles)
    overlap: int = 2  # --overlap: checks that wait, run beside each worker's current one (suite.overlap)

    @property
    def has_target(self) -> bool:
        return bool(self.specs or self.clients)


def read(get: GetOption, *, worker_seed: int | None = None) -> RunSettings:
    """The run's settings; UsageProblem for the first bad option."""
    profile = parse_profile(get("profile"))
    specs = _server_specs(get, profile)
    clients, client_bases = _client_specs(get)
    overrides = parse_declarations(get("declare"), profile)
    only = parse_only(get("only") or "", profile)
    timeout = get("check_timeout")
    if timeout is None or timeout <= 0:
        raise UsageProblem("--check-timeout wants a positive number of seconds")
    ready_timeout = get("ready_timeout")
    if ready_timeout is None or ready_timeout <= 0:
        raise UsageProblem("--ready-timeout wants a positive number of seconds")
    for flag, path in (("--json", get("sockspec_json")), ("--junit", get("sockspec_junit"))):
        if path:
            check_output_path(flag, path)
    if get("sockspec_html"):
        check_output_directory("--html", get("sockspec_html"))
    shard = parse_shard(get("shard")) if get("shard") else None
    robust_scale = get("robust_scale")
    if robust_scale is None or not (math.isfinite(robust_scale) and robust_scale >= 1):
        raise UsageProblem("--robust-scale wants a number of at least 1 (1 is the default size)")
    overlap = get("overlap")
    if overlap is None or overlap < 0:
        raise UsageProblem("--overlap wants a whole number of checks, 0 or more (0 runs every check in turn)")
    seed = worker_seed if worker_seed is not None else get("seed")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    image_bases = sorted({spec.image for spec in specs.values() if spec.image is not None and spec.arch is not None})
    return RunSettings(
        specs,
        overrides,
        strict=bool(get("sockspec_strict")),
        seed=int(seed),
        only=only,
        timeout=float(timeout),
        ready_timeout=float(ready_timeout),
        area_by_area=bool(get("area_by_area")),
        allow_unchecked=bool(get("allow_unchecked")),
        target_args=_target_args(get, specs, clients),
        image_bases=image_bases,
        clients=clients,
        client_bases=client_bases,
        dns=bool(clients) and not get("no_dns"),
        shard=shard,
        robust_scale=float(robust_scale),
        profile=profile,
        overlap=int(overlap),
    )


def parse_profile(text: str | None) -> str:
    """--profile NAME: one of suite.profiles (the default when not given)."""
    try:
        return profiles.named(text or profiles.DEFAULT).name
    except ValueError as error:
        raise UsageProblem(f"--profile: {error}") from None


# ---- servers -------------------------------------------------------------------------------


def _server_specs(get: GetOption, profile: str) -> dict[str, TargetSpec]:
    specs: dict[str, TargetSpec] = {}
    try:
        if get("reference"):
            for arch in resolve_architectures(get("reference")):
                specs[arch] = reference_spec(arch, profile)
        for item in get("image"):
            base_spec, _, arch_spec = item.partition(":")
            archs = resolve_architectures(arch_spec or "all")
            for base in resolve_bases(base_spec):
                for arch in archs:
                    name = f"{arch}@{base.key}"
                    specs[name] = TargetSpec(name, image=base.key, arch=arch)
        commands = get("cmd")
        images = [base.key for spec in get("cmd_image") or [] for base in resolve_bases(spec)]
        dockerfile = _dockerfile(get("dockerfile"), images)
        for template in commands:
            check_server_template(template, here=not images and dockerfile is None)
            name = _unique(program_name(template), specs)
            specs[name] = TargetSpec(name, template=template)
        addresses = get("address")
        ca = get("ca")
        if ca is not None and not Path(ca).is_file():
            raise UsageProblem(f"--ca {ca}: no such file")
        for index, text in enumerate(addresses):
            name = "address" if len(addresses) == 1 else f"address{index + 1}"
            specs[name] = TargetSpec(
                name, address=parse_address(text), ca=Path(ca) if ca else None, hostname=get("tls_hostname")
            )
        if images and not commands:
            raise UsageProblem("--cmd-image runs a --cmd inside an image: give the --cmd too")
    except ValueError as error:
        raise UsageProblem(str(error)) from None
    return _in_images(_named(specs, get("name") or []), images, dockerfile)


def _dockerfile(path: str | None, images: list[str]) -> Path | None:
    if path is None:
        return None
    if not images:
        raise UsageProblem("--dockerfile builds on each --cmd-image: give --cmd-image IMAGE (or all)")
    if not Path(path).is_file():
        raise UsageProblem(f"--dockerfile {path}: no such file")
    return Path(path).resolve()


def _in_images(specs: dict[str, TargetSpec], images: list[str], dockerfile: Path | None) -> dict[str, TargetSpec]:
    """--cmd-image: each --cmd target runs in each image instead of here ("cmd@bookworm")."""
    if not images:
        return specs
    placed: dict[str, TargetSpec] = {}
    for spec in specs.values():
        if spec.template is None or spec.reference:
            placed[spec.name] = spec
            continue
        for key in dict.fromkeys(images):
            name = f"{spec.name}@{key}"
            placed[name] = dataclasses.replace(spec, name=name, image=key, workdir=Path.cwd(), dockerfile=dockerfile)
    return placed


INTERPRETERS = ("python", "python3", "node", "nodejs", "ruby", "perl", "php", "java", "sh", "bash", "dotnet")


def program_name(template: str) -> str:
    """A --cmd target's name in the reports, from its command (--name overrides it):
    "python3 myserver.py --port {port}" -> "myserver", "./kv-server {port}" ->
    "kv-server", "python3 -m shop.server ..." -> "shop.server", "java -jar kv.jar" -> "kv"."""
    words = [w for w in shlex.split(template) if "{" not in w]
    program = Path(words[0]).name if words else ""
    chosen = program
    if re.sub(r"[\d.]+$", "", program) in INTERPRETERS:
        rest = words[1:]
        for index, word in enumerate(rest):
            if word in ("-m", "-jar") and index + 1 < len(rest):
                chosen = rest[index + 1]
                break
            if not word.startswith("-"):
                chosen = word
                break
        chosen = Path(chosen).name
        if "." in chosen and not chosen.startswith("."):
            stem, _, extension = chosen.rpartition(".")
            chosen = stem if extension in ("py", "js", "mjs", "rb", "pl", "php", "jar", "sh", "dll") else chosen
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", chosen).strip("-._")[:64]
    return name if name and NAME.fullmatch(name) else "cmd"


def _unique(name: str, taken: dict[str, TargetSpec]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"


# A name ends up in file names, node IDs and JUnit: keep it to a safe alphabet.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _named(specs: dict[str, TargetSpec], names: list[str]) -> dict[str, TargetSpec]:
    """--name: the k-th names the k-th --cmd or --address target, in the order given."""
    if not names:
        return specs
    nameable = [spec.name for spec in specs.values() if _given_by_user(spec)]
    if len(names) > len(nameable):
        raise UsageProblem(
            f"--name: {len(names)} names for {len(nameable)} --cmd/--address target(s); give one per target, in order"
        )
    renamed = dict(zip(nameable, names, strict=False))
    for name in names:
        if not NAME.fullmatch(name):
            raise UsageProblem(f"--name {name!r}: letters, digits, '.', '_' and '-' (at most 64, no leading symbol)")
    result: dict[str, TargetSpec] = {}
    for spec in specs.values():
        name = renamed.get(spec.name, spec.name)
        if name in result:
            raise UsageProblem(f"--name {name}: two targets would have that name")
        result[name] = dataclasses.replace(spec, name=name)
    return result


def _given_by_user(spec: TargetSpec) -> bool:
    """A --cmd or an --address target (not a reference server or an image)."""
    return not spec.reference and (spec.template is not None or spec.address is not None)


def parse_shard(text: str) -> tuple[int, int]:
    """--shard I/N: share I (counted from 1) of N."""
    index_text, slash, count_text = text.partition("/")
    if not (slash and index_text.isdigit() and count_text.isdigit()):
        raise UsageProblem(f"--shard {text}: give I/N, e.g. 1/3 for the first of three shares")
    index, count = int(index_text), int(count_text)
    if not 1 <= index <= count:
        raise UsageProblem(f"--shard {text}: I must be between 1 and N (got {index} of {count})")
    return index, count


def check_output_directory(flag: str, path: str) -> None:
    """A report directory: created if missing (its parent must exist), never a file."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageProblem(f"{flag} {path}: is a file; give a directory")
    parent = target.resolve().parent
    if not target.exists() and not parent.is_dir():
        raise UsageProblem(f"{flag} {path}: no such directory: {parent}")
    if not os.access(target if target.exists() else parent, os.W_OK):
        raise UsageProblem(f"{flag} {path}: cannot write there")


def check_server_template(template: str, *, here: bool = True) -> None:
    """A --cmd template that can be started: quoting, placeholders, and (``here``:
    run on this machine) a program that exists."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        words = shlex.split(template)
    except ValueError as error:
        raise UsageProblem(f"--cmd {template!r}: {error}") from None
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
        raise UsageProblem(f"--cmd: unknown placeholder {{{unknown[0]}}}; known: {known}")
    if not words:
        raise UsageProblem("--cmd: the template is empty")
    if here:
        check_program(words[0], "--cmd")


def check_program(program: str, flag: str) -> None:
    """The first word of a template names a program that can run here."""
    if "{" in program:
        return  # filled in per instance; judged when it starts
    if "/" in program:
        path = Path(program)
        if not path.exists():
            raise UsageProblem(f"{flag}: no such program: {program} (from {Path.cwd()})")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise UsageProblem(f"{flag}: {program} is not an executable file (chmod +x, or name its interpreter)")
    elif shutil.which(program) is None:
        raise UsageProblem(f"{flag}: no program named {program!r} on PATH")


# ---- clients -------------------------------------------------------------------------------


def _client_specs(get: GetOption) -> tuple[dict[str, ClientSpec], list[str]]:
    clients: dict[str, ClientSpec] = {}
    per_feature: dict[str, str] = {}
    for item in get("client_cmd_for"):
        feature, sep, template = item.partition("=")
        if not sep or feature not in OPTIONAL_FEATURES:
            known = ", ".join(sorted(OPTIONAL_FEATURES))
            raise UsageProblem(f"--client-cmd-for wants FEATURE=TEMPLATE, FEATURE one of {known}; not {item!r}")
        per_feature[feature] = template
    templates = get("client_cmd")
    if per_feature and not templates:
        raise UsageProblem("--client-cmd-for needs a --client-cmd")
    for template in [*templates, *per_feature.values()]:
        try:
            check_template(template, required=("host", "port"))
        except ValueError as error:
            raise UsageProblem(str(error)) from None
        check_program(shlex.split(template)[0], "--client-cmd")
    for index, template in enumerate(templates):
        name = "client" if len(templates) == 1 else f"client{index + 1}"
        clients[name] = ClientSpec(name, {MAIN: template, **per_feature}, container_image=get("client_cmd_image"))
    if get("client_reference"):
        clients["client-reference"] = client_reference_spec()
    client_bases: list[str] = []
    for item in get("client_image"):
        try:
            bases = resolve_bases(item)
        except ValueError as error:
            raise UsageProblem(str(error)) from None
        for base in bases:
            client_bases.append(base.key)
            spec = client_reference_spec(image=base.key)
            clients[spec.name] = spec
    return clients, sorted(set(client_bases))


# ---- declarations, selection, outputs --------------------------------------------------------


def parse_declarations(items: list[str], profile: str = profiles.DEFAULT) -> dict[str, str]:
    """--declare KEY=VALUE, each key one that INFO declares under ``profile``, each value of its key's form."""
    overrides: dict[str, str] = {}
    declarable = DECLARABLE_BY_PROFILE[profile]
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageProblem(f"--declare wants KEY=VALUE, not {item!r}")
        if key not in declarable:
            hint = difflib.get_close_matches(key, declarable, n=1)
            raise UsageProblem(
                f"--declare {item}: unknown key {key!r}"
                + (f" (did you mean {hint[0]}?)" if hint else "")
                + f"; known{'' if profile == profiles.DEFAULT else f' under --profile {profile}'}: "
                + ", ".join(declarable)
            )
        problem = _bad_value(key, value, profiles.named(profile).optional_features)
        if problem:
            raise UsageProblem(f"--declare {item}: {problem}")
        overrides[key] = value
    return overrides


def _bad_value(key: str, value: str, features: frozenset[str] = OPTIONAL_FEATURES) -> str:
    if (key in POSITIVE_KEYS or key == "maxclients") and not (value.isdigit() and int(value) > 0):
        return f"{key} wants a positive integer"
    if key == "idle_timeout_ms" and not value.isdigit():
        return "idle_timeout_ms wants a non-negative integer (milliseconds; 0 disables it)"
    if key == "timeout" and not value.isdigit():
        return "timeout wants a non-negative integer (seconds, as Redis's timeout; 0 disables it)"
    if key == "overflow" and value not in ("busy", "queue"):
        return "overflow wants busy or queue"
    if key == "features":
        named = [f for f in value.split(",") if f]
        unknown = [f for f in named if f not in features]
        if unknown:
            return f"unknown feature {unknown[0]!r}; known: {', '.join(sorted(features))} (comma list, or empty)"
        if len(set(named)) != len(named):
            return "a feature is named twice"
    return ""


def parse_only(text: str, profile: str = profiles.DEFAULT) -> list[str]:
    """--only's patterns, upper-cased; each must name at least one requirement of ``profile``."""
    patterns = [p.strip().upper() for p in text.split(",") if p.strip()]
    known = list(requirements.load(profile=profile))
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(requirement_id, pattern) for requirement_id in known):
            close = difflib.get_close_matches(pattern, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            elsewhere = [p for p in profiles.PROFILES.values() if p.name != profile and p.owns(pattern)]
            if elsewhere:
                hint = f"; {pattern} is of the {elsewhere[0].name} profile: give --profile {elsewhere[0].name}"
            raise UsageProblem(
                f"--only {pattern}: no requirement matches{hint} (`sockspec list` shows every ID;"
                " patterns like 'CH-FRAME-*' select an area)"
            )
    return patterns


def matches(requirement_id: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(requirement_id, pattern) for pattern in patterns)


def check_output_path(flag: str, path: str) -> None:
    """A report file can be written where it was asked for, before the run spends any time."""
    target = Path(path)
    if target.is_dir():
        raise UsageProblem(f"{flag} {path}: is a directory; give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageProblem(f"{flag} {path}: no such directory: {parent}")
    if not os.access(parent, os.W_OK):
        raise UsageProblem(f"{flag} {path}: cannot write in {parent}")


def parse_workers(text: str) -> str:
    """-n: a positive number of workers, or auto/logical (pytest-xdist's words)."""
    if text in ("auto", "logical") or (text.isdigit() and int(text) > 0):
        return text
    raise ValueError(f"-n wants a positive number of workers or auto, not {text!r}")


# ---- re-runs -------------------------------------------------------------------------------


def _target_args(get: GetOption, specs: dict[str, TargetSpec], clients: dict[str, ClientSpec]) -> str:
    args = [spec.describe() for spec in specs.values() if _given_by_user(spec) and spec.image is None]
    if get("cmd_image"):  # one --cmd for all its images, not one per image
        args += [f"--cmd {shlex.quote(template)}" for template in get("cmd")]
        args += [f"--cmd-image {image}" for image in get("cmd_image")]
        if get("dockerfile"):
            args.append(f"--dockerfile {shlex.quote(str(Path(get('dockerfile')).resolve()))}")
    args += [f"--name {shlex.quote(name)}" for name in get("name") or []]
    if get("reference"):
        args.insert(0, f"--reference {get('reference')}")
    args += [f"--image {item}" for item in get("image")]
    if parse_profile(get("profile")) != profiles.DEFAULT:
        args.append(f"--profile {parse_profile(get('profile'))}")
    args += [f"--declare {shlex.quote(d)}" for d in get("declare")]
    if get("ca"):
        args.append(f"--ca {shlex.quote(str(Path(get('ca')).resolve()))}")
    if get("tls_hostname") not in (None, "localhost"):
        args.append(f"--tls-hostname {shlex.quote(get('tls_hostname'))}")
    args += [client.describe() for client in clients.values()]
    if clients and get("no_dns"):
        args.append("--no-dns")
    return " ".join(args)
