"""``sockspec batch MANIFEST``: every target of a manifest checked, up to N at
a time, each isolated (suite.batch.runner), and one grade table for all.

What it writes, each where asked:

- ``--json DIR``: ``batch.json`` (one report for every target, schema 2),
  ``grades.json`` and ``grades.csv`` (the grade table), and each target's own
  report, JUnit file and log under ``targets/``, ``junit/`` and ``logs/``;
- ``--html DIR``: the HTML report, with the grade table as ``grades.html``;
- ``--junit DIR``: ``batch.xml`` (every target's testsuite) beside each
  target's own file.

It exits as one run over all the targets would: 0, 1 or 2 (a target that
could not be judged, or a bad manifest), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import random
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import configuration
from ..configuration import UsageProblem
from ..report import files, grades, merge
from ..report.results import RunFacts, TargetResult, exit_code
from . import manifest as manifests
from .manifest import BatchTarget, Manifest
from .runner import EXIT_INTERRUPTED, RunEnded, run_batch

EXIT_USAGE = 2


def add_parser(commands: Any) -> None:
    batch = commands.add_parser("batch", help="check every target of a manifest (a class to grade): one grade table")
    batch.add_argument("manifest", metavar="MANIFEST", help="a TOML file of [[target]] tables (see docs/batch.md)")
    batch.add_argument("--json", metavar="DIR", help="batch.json, grades.json, grades.csv and each target's files")
    batch.add_argument("--html", metavar="DIR", help="the HTML report, with the grade table")
    batch.add_argument("--junit", metavar="DIR", help="batch.xml and each target's JUnit file")
    batch.add_argument("-n", dest="workers", type=int, default=1, metavar="N", help="targets at a time (default 1)")
    batch.add_argument("--shard", metavar="I/N", help="check only share I of N of the targets (one CI job of N)")
    batch.add_argument(
        "--target", action="append", default=[], metavar="NAME", help="only targets with this name or glob (repeat)"
    )
    batch.add_argument("--seed", type=int, help="one seed for every target (default: a random one, reported)")
    batch.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    try:
        loaded = manifests.read(options.manifest)
        chosen = _select(loaded, options.target, options.shard)
        if options.workers < 1:
            raise UsageProblem("-n wants a positive number of targets at a time")
        for flag in ("json", "html", "junit"):
            if getattr(options, flag):
                configuration.check_output_directory(f"--{flag}", getattr(options, flag))
        only = configuration.parse_only(str(loaded.shared.get("only", "")))
    except UsageProblem as problem:
        print(f"sockspec batch: {problem}", file=sys.stderr)
        return EXIT_USAGE
    seed = options.seed if options.seed is not None else loaded.shared.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = random.SystemRandom().randrange(1 << 31)
    scratch = None if options.json else Path(tempfile.mkdtemp(prefix="sockspec-batch-"))
    work = Path(options.json) if options.json else scratch
    assert work is not None
    try:
        ended, interrupted = run_batch(loaded, chosen, work, workers=options.workers, seed=seed, log=_log)
        targets = [_judged(loaded, run) for run in ended]
        facts = RunFacts(
            strict=bool(loaded.shared.get("strict")),
            seed=seed,
            only=only,
            interrupted=interrupted,
            allow_unchecked=bool(loaded.shared.get("allow_unchecked")),
        )
        report = files.to_json(targets, facts)
        _write(report, targets, facts, ended, options)
        # The reports are written; a closed terminal loses only the table (rich says so with SystemExit(1)).
        with contextlib.suppress(OSError, SystemExit):
            _show(report, options)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        _let_go_of_an_unread_terminal()
    return EXIT_INTERRUPTED if interrupted else exit_code(targets, facts)


def _let_go_of_an_unread_terminal() -> None:
    """Whoever read standard output has gone: what is left in its buffer goes nowhere,
    so that Python's own flush at exit cannot turn the batch's exit code into an error."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _log(line: str) -> None:
    # Whoever reads the batch's output may be gone (a closed pipe): the batch carries on, and stops its runs.
    with contextlib.suppress(OSError):
        print(f"batch: {line}", flush=True)


def _select(loaded: Manifest, names: list[str], shard: str | None) -> list[BatchTarget]:
    chosen = loaded.targets
    if names:
        unknown = [name for name in names if not any(fnmatch.fnmatchcase(t.name, name) for t in chosen)]
        if unknown:
            raise UsageProblem(f"--target {unknown[0]}: no target of {loaded.path} has that name")
        chosen = [t for t in chosen if any(fnmatch.fnmatchcase(t.name, name) for name in names)]
    if shard:
        index, count = configuration.parse_shard(shard)
        chosen = [t for position, t in enumerate(chosen) if position % count == index - 1]
        if not chosen:
            raise UsageProblem(f"--shard {shard}: no target falls in this share ({len(loaded.targets)} in all)")
    return chosen


def _judged(loaded: Manifest, run: RunEnded) -> TargetResult:
    """The target as its own run judged it, or, when that run judged nothing, a
    target with no results and the reason."""
    target = TargetResult(run.target.name, _description(run.target))
    if run.report.exists():
        try:
            found = merge.read(str(run.report)).targets
        except merge.ReportProblem as problem:  # a run cut short while writing
            found, target.problem = [], f"its report could not be read: {problem}"
        if found:
            target = found[0]
            target.name = run.target.name  # the manifest's name, also for a reference server
    target.problem = run.problem or target.problem
    target.rerun = f"sockspec batch {shlex.quote(str(loaded.path))} --target {shlex.quote(run.target.name)}"
    return target


def _description(target: BatchTarget) -> str:
    return f"--{target.kind} {shlex.quote(target.value)} (in {target.workdir})"


def _write(
    report: dict[str, Any],
    targets: list[TargetResult],
    facts: RunFacts,
    ended: list[RunEnded],
    options: argparse.Namespace,
) -> None:
    if options.json:
        directory = Path(options.json)
        files.write_reports(targets, facts, json_path=str(directory / "batch.json"))
        grades.write_csv(report, directory / "grades.csv")
        grades.write_json(report, directory / "grades.json")
    if options.junit:
        directory = Path(options.junit)
        directory.mkdir(parents=True, exist_ok=True)
        files.write_junit(str(directory / "batch.xml"), targets, facts)
        for run in ended:
            if run.junit.exists() and run.junit.parent.resolve() != directory.resolve():
                shutil.copy(run.junit, directory / run.junit.name)
    if options.html:
        files.write_reports(targets, facts, html_dir=options.html)


def _show(report: dict[str, Any], options: argparse.Namespace) -> None:
    table = Table(title=f"sockspec batch: {len(report['targets'])} target(s)", title_justify="left")
    for column in ("target", "level", "PASS", "FAIL", "ERROR", "fix first", "time"):
        table.add_column(column)
    for row in grades.rows(report):
        problem = row["problem"] if len(row["problem"]) <= 160 else row["problem"][:159] + "…"
        level = f"{row['level']}: {problem}" if problem else row["level"]
        first = f"{row['fix_first']} {row['fix_first_title']}".strip()
        table.add_row(
            row["target"], level, str(row["PASS"]), str(row["FAIL"]), str(row["ERROR"]), first, f"{row['time']:.0f} s"
        )
    console = Console(width=140)
    console.print(table)
    for flag, what in (("json", "grades.csv, grades.json, batch.json"), ("html", "index.html, grades.html")):
        if getattr(options, flag):
            console.print(f"{what} in {getattr(options, flag)}")
    console.print(f"seed {report['summary']['seed']}; run one target again: sockspec batch MANIFEST --target NAME")
