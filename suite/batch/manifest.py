"""The batch manifest: many targets in one TOML file, for a class to grade.

    [batch]                          # optional: what every target shares
    time_budget = 600                # seconds a target may take in all
    only = "CH-FRAME-*,CH-CMD-*"     # as sockspec run --only
    declare = ["idle_timeout_ms=2000"]

    [[target]]                       # one server...
    name = "reference"
    reference = "evented"

    [[target]]                       # ...or one entry for many directories
    each = "students/*/"             # a glob, relative to the manifest
    cmd = "python3 server.py --port {port}"   # run in each directory
    name = "{dir}"                   # the directory's name (the default)

A target is one of ``cmd``, ``address``, ``reference`` or ``image``; ``each``
repeats a ``cmd`` entry over directories (``{dir}`` in ``name``, ``cmd`` and
``workdir`` is the directory's name). A mistake is reported with the
manifest's line, before anything runs.
"""

from __future__ import annotations

import difflib
import glob
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configuration import NAME, UsageProblem

__all__ = ["BatchTarget", "Manifest", "read"]

KINDS = ("cmd", "address", "reference", "image")
TARGET_KEYS = (*KINDS, "name", "each", "workdir", "declare", "time_budget", "ready_timeout", "ca", "tls_hostname")
BATCH_KEYS = ("time_budget", "only", "declare", "seed", "check_timeout", "ready_timeout", "strict", "allow_unchecked")
DEFAULT_TIME_BUDGET = 600.0  # a whole run of a slow server fits; a hung one is stopped


@dataclass(frozen=True)
class BatchTarget:
    name: str
    kind: str  # one of KINDS
    value: str  # the command template, address, architecture or IMAGE[:ARCH]
    workdir: Path
    declare: tuple[str, ...] = ()
    time_budget: float = DEFAULT_TIME_BUDGET
    ready_timeout: float | None = None
    ca: str | None = None
    tls_hostname: str | None = None
    line: int = 0  # where the manifest defines it

    def run_args(self) -> list[str]:
        """The `sockspec run` options that name this target and its own settings."""
        args = [f"--{self.kind}", self.value]
        if self.kind in ("cmd", "address"):
            args += ["--name", self.name]
        for declaration in self.declare:
            args += ["--declare", declaration]
        if self.ready_timeout is not None:
            args += ["--ready-timeout", str(self.ready_timeout)]
        if self.ca:
            args += ["--ca", self.ca]
        if self.tls_hostname:
            args += ["--tls-hostname", self.tls_hostname]
        return args


@dataclass(frozen=True)
class Manifest:
    path: Path
    targets: list[BatchTarget]
    shared: dict[str, Any] = field(default_factory=dict)  # [batch]

    def run_args(self) -> list[str]:
        """The `sockspec run` options every target shares."""
        args: list[str] = []
        if "only" in self.shared:
            args += ["--only", str(self.shared["only"])]
        for declaration in self.shared.get("declare", []):
            args += ["--declare", declaration]
        if "check_timeout" in self.shared:
            args += ["--check-timeout", str(self.shared["check_timeout"])]
        if self.shared.get("strict"):
            args.append("--strict")
        if self.shared.get("allow_unchecked"):
            args.append("--allow-unchecked")
        return args


def read(path: str) -> Manifest:
    manifest = Path(path)
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageProblem(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageProblem(f"{path}: cannot read it ({error})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageProblem(f"{path}: not valid TOML: {error}") from None
    lines = _table_lines(text)
    unknown = sorted(set(data) - {"batch", "target"})
    if unknown:
        raise UsageProblem(f"{path}: unknown table or key {unknown[0]!r}; a manifest has [batch] and [[target]]")
    shared = data.get("batch", {})
    if not isinstance(shared, dict):
        raise UsageProblem(f"{path}: 'batch' must be a table: [batch]")
    _check_keys(path, lines.get("batch", 0), "[batch]", shared, BATCH_KEYS)
    entries = data.get("target", [])
    if not isinstance(entries, list) or not entries:
        raise UsageProblem(f"{path}: no [[target]] tables: a manifest names at least one target")
    base = manifest.resolve().parent
    targets: list[BatchTarget] = []
    for number, entry in enumerate(entries):
        line = lines["target"][number] if number < len(lines["target"]) else 0
        targets.extend(_expand(path, line, entry, base, shared))
    seen: dict[str, int] = {}
    for target in targets:
        if target.name in seen:
            raise UsageProblem(
                f"{path}:{target.line}: a second target named {target.name!r} (the first: line {seen[target.name]})"
            )
        seen[target.name] = target.line
    return Manifest(manifest, targets, shared)


def _table_lines(text: str) -> dict[str, Any]:
    """The line of [batch] and of each [[target]], for messages (tomllib gives no positions)."""
    lines: dict[str, Any] = {"target": []}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if re.fullmatch(r"\[\[\s*target\s*\]\](\s*#.*)?", stripped):
            lines["target"].append(number)
        elif re.fullmatch(r"\[\s*batch\s*\](\s*#.*)?", stripped):
            lines["batch"] = number
    return lines


def _check_keys(path: str, line: int, where: str, entry: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(allowed)})"
            raise UsageProblem(f"{path}:{line}: {where}: unknown key {key!r}{hint}")


def _expand(path: str, line: int, entry: dict[str, Any], base: Path, shared: dict[str, Any]) -> list[BatchTarget]:
    where = f"[[target]] {entry.get('name', '')}".rstrip()
    _check_keys(path, line, where, entry, TARGET_KEYS)
    kinds = [kind for kind in KINDS if kind in entry]
    if len(kinds) != 1:
        said = ", ".join(kinds) if kinds else "none"
        raise UsageProblem(f"{path}:{line}: {where}: give exactly one of {', '.join(KINDS)} (got {said})")
    kind = kinds[0]
    for key in (*KINDS, "name", "each", "workdir", "ca", "tls_hostname"):
        if key in entry and not (isinstance(entry[key], str) and entry[key].strip()):
            raise UsageProblem(f"{path}:{line}: {where}: {key} must be a non-empty string")
    if "each" not in entry:
        if "name" not in entry and kind in ("cmd", "address"):
            raise UsageProblem(f"{path}:{line}: {where}: a {kind} target needs a name")
        name = entry.get("name", entry[kind].replace(":", "-"))
        workdir = base / entry.get("workdir", ".")
        return [_target(path, line, entry, kind=kind, name=name, workdir=workdir, shared=shared, fill={})]
    if kind != "cmd":
        raise UsageProblem(f"{path}:{line}: {where}: 'each' repeats a cmd over directories; this is a {kind} target")
    matches = sorted(Path(p) for p in glob.glob(str(base / entry["each"])) if Path(p).is_dir())
    if not matches:
        raise UsageProblem(f"{path}:{line}: {where}: each = {entry['each']!r} matches no directory under {base}")
    targets = []
    for directory in matches:
        fill = {"{dir}": directory.name}
        name = _fill(entry.get("name", "{dir}"), fill)
        workdir = directory / _fill(entry.get("workdir", "."), fill)
        targets.append(_target(path, line, entry, kind=kind, name=name, workdir=workdir, shared=shared, fill=fill))
    return targets


def _target(
    path: str,
    line: int,
    entry: dict[str, Any],
    *,
    kind: str,
    name: str,
    workdir: Path,
    shared: dict[str, Any],
    fill: dict[str, str],
) -> BatchTarget:
    if not NAME.fullmatch(name):
        raise UsageProblem(
            f"{path}:{line}: target name {name!r}: letters, digits, '.', '_' and '-' (at most 64, no leading symbol)"
        )
    if not workdir.is_dir():
        raise UsageProblem(f"{path}:{line}: target {name}: workdir {workdir} is not a directory")
    declare = entry.get("declare", [])
    if isinstance(declare, dict):
        declare = [f"{key}={value}" for key, value in declare.items()]
    if not isinstance(declare, list) or not all(isinstance(d, str) for d in declare):
        raise UsageProblem(f"{path}:{line}: target {name}: declare is a list of 'KEY=VALUE' strings, or a table")
    budget = entry.get("time_budget", shared.get("time_budget", DEFAULT_TIME_BUDGET))
    ready = entry.get("ready_timeout", shared.get("ready_timeout"))
    for key, value in (("time_budget", budget), ("ready_timeout", ready)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise UsageProblem(f"{path}:{line}: target {name}: {key} wants a positive number of seconds")
    return BatchTarget(
        name=name,
        kind=kind,
        value=_fill(entry[kind], fill),
        workdir=workdir.resolve(),
        declare=tuple(_fill(d, fill) for d in declare),
        time_budget=float(budget),
        ready_timeout=float(ready) if ready is not None else None,
        ca=str((workdir / entry["ca"]).resolve()) if "ca" in entry else None,
        tls_hostname=entry.get("tls_hostname"),
        line=line,
    )


def _fill(text: str, fill: dict[str, str]) -> str:
    # Only {dir}: the command's own placeholders ({port}, {cert}, ...) are the suite's to fill.
    for placeholder, value in fill.items():
        text = text.replace(placeholder, value)
    return text
