"""The ``sockspec`` command.

- ``sockspec serve ARCH [flags]``: run a reference server (same as
  ``python -m reference_servers ARCH``).
- ``sockspec client [flags] HOST PORT COMMAND [ARGS...]``: the reference
  client (same as ``python -m reference_client``).
- ``sockspec ping --reference all``: start reference servers locally and
  report whether each answers.
- ``sockspec run TARGET [options]``: the conformance suite (a thin layer over
  ``pytest suite/checks`` with the sockspec plugin).
- ``sockspec list [PATTERN]``: the requirements (ID, level, feature, title).
- ``sockspec explain ID``: a requirement's text, from PROTOCOL.md.
- ``sockspec matrix``: servers (ours, or yours with --cmd/--dockerfile) in each Linux image.
- ``sockspec merge OUT IN...``: JSON reports (shards of one run, or other targets) joined.
- ``sockspec batch MANIFEST``: every target of a manifest, isolated; one grade table.
- ``sockspec image build``: the suite's own image, for CI runners without Python.
- ``sockspec bench``: throughput, latency and memory side by side, redis-server the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import pytest
from rich.console import Console
from rich.table import Table

from reference_client.cli import main as client
from reference_servers.cli import ARCHITECTURES
from reference_servers.cli import main as serve

from . import configuration, image_command, ping, preflight, profiles, reaper, requirements
from .batch import command as batch_command
from .bench import command as bench_command
from .configuration import UsageProblem
from .docker.images import resolve_bases
from .options import SHARED
from .report import files, grades, merge, terminal
from .report.progress import Progress
from .report.results import exit_code
from .targets.reference import resolve_architectures

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM in the middle of a run; its reports say so
CHECKS = Path(__file__).resolve().parent / "checks"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        # The server's own parser owns its flags, so both spellings behave alike.
        return serve(args[1:], prog="sockspec serve")
    if args and args[0] == "client":
        return client(args[1:], prog="sockspec client")
    parser = _parser()
    try:
        options = parser.parse_args(args)
    except UsageProblem as problem:
        print(f"sockspec: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if options.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handlers = reaper.interrupts_unwind()  # SIGTERM too unwinds, and every cleanup runs
    try:
        return int(options.run(options))
    except KeyboardInterrupt:
        print(f"sockspec: interrupted ({reaper.interrupted_by() or 'SIGINT'})", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        reaper.restore_handlers(handlers)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (its usage text is one --help away)."""

    def error(self, message: str) -> NoReturn:
        raise UsageProblem(f"{self.prog.removeprefix('sockspec ')}: {message} (see `{self.prog} --help`)")


def _version() -> str:
    try:
        return version("sockspec")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sockspec", description="Conformance checks for CloudHash/1 servers and clients.")
    parser.add_argument("--version", action="version", version=f"sockspec {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.add_parser("serve", help="run a reference server (see `sockspec serve --help`)")
    commands.add_parser("client", help="the reference client (see `sockspec client --help`)")
    p = commands.add_parser("ping", help="start reference servers and report whether each answers")
    p.add_argument(
        "--reference",
        default="all",
        metavar="ARCH|all",
        help="an architecture, a comma list, or all (default): " + ", ".join(ARCHITECTURES),
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each server (default 10)")
    p.set_defaults(run=ping.run)

    r = commands.add_parser("run", help="run the conformance suite against a target")
    sections = {
        "targets": r.add_argument_group("targets (at least one)"),
        "clients": r.add_argument_group("client targets (the suite plays the server and the DNS)"),
        "run": r,
    }
    for option in SHARED:
        sections[option.section].add_argument(option.flag, **option.definition(for_plugin=False))
    r.add_argument("--strict", action="store_true", help="broken SHOULDs fail the run too")
    r.add_argument(
        "-n",
        dest="workers",
        metavar="N",
        type=_workers,
        help=f"parallel workers (pytest-xdist), or auto; a whole run of one server defaults to {WHOLE_RUN_WORKERS}"
        " (its checks mostly wait out timers, and those waits overlap), a partial or stepwise run to 1",
    )
    r.add_argument("-k", dest="keyword", metavar="EXPR", help="select checks by name (pytest -k)")
    r.add_argument("-v", dest="verbose", action="count", default=0, help="more detail (repeat for more)")
    r.add_argument("-x", dest="exitfirst", action="store_true", help="stop at the first failing check")
    r.set_defaults(run=run_suite)

    m = commands.add_parser("matrix", help="every reference server in every image: one report")
    m.add_argument(
        "--arch", metavar="ARCH|all", help="reference architectures (comma list or all; default all, none with --cmd)"
    )
    m.add_argument("--cmd", metavar="TEMPLATE", help="your server: its command, run inside each image ({host} to bind)")
    m.add_argument("--dockerfile", metavar="PATH", help="with --cmd: your server's image, built FROM ${BASE} on each")
    m.add_argument("--declare", action="append", default=[], metavar="KEY=VALUE", help="as for sockspec run")
    m.add_argument("--images", default="bookworm,trixie", metavar="IMAGES", help="bases from docker/bases.toml")
    m.add_argument("--no-client", action="store_true", help="leave the reference client out of the matrix")
    m.add_argument("--json", metavar="FILE", help="write the results (with the matrix) as JSON")
    m.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase per requirement and cell")
    m.add_argument("--html", metavar="DIR", help="write the HTML report: the matrix, a page per cell and per failure")
    m.add_argument("--only", metavar="PATTERN", help="requirement IDs to check")
    m.add_argument("--seed", type=int, help="reproduce a run")
    m.add_argument("--strict", action="store_true", help="broken SHOULDs fail the run too")
    m.add_argument("-n", dest="workers", default="2", metavar="N", type=_workers, help="parallel workers (default 2)")
    m.add_argument("-v", dest="verbose", action="count", default=0, help="more detail")
    m.set_defaults(run=run_matrix)

    listing = commands.add_parser("list", help="the requirements: ID, level, feature, title")
    listing.add_argument("pattern", nargs="?", default="*", help="IDs to list, any case: CH-FRAME-*, 'ch-tls-*'")
    listing.add_argument(
        "--profile", default=profiles.DEFAULT, metavar="PROFILE", help="cloudhash (the default) or resp2"
    )
    listing.set_defaults(run=list_requirements)
    e = commands.add_parser("explain", help="a requirement's text, from PROTOCOL.md or PROTOCOL-RESP2.md")
    e.add_argument("id", metavar="ID", help="a requirement ID, e.g. CH-FRAME-17")
    e.set_defaults(run=explain_requirement)
    merging = commands.add_parser(
        "merge", help="join JSON reports (the shards of one run, or runs of other targets) into one"
    )
    merging.add_argument("output", metavar="OUT.json", help="the merged JSON report (schema 2)")
    merging.add_argument("inputs", metavar="IN.json", nargs="+", help="reports to join (schema 1 or 2)")
    merging.add_argument("--html", metavar="DIR", help="also write the HTML report")
    merging.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    merging.add_argument("--csv", metavar="FILE", help="also write the grade table (one row per target) as CSV")
    merging.set_defaults(run=merge_reports)
    image_command.add_parser(commands)
    batch_command.add_parser(commands)
    bench_command.add_parser(commands)
    return parser


# Most of a whole run is spent waiting out real timers (idle timeouts, the
# shutdown deadline, slow readers), not computing: four workers on two cores
# let those waits overlap. Each check keeps its own deadlines and margins.
WHOLE_RUN_WORKERS = "4"


def _default_workers(settings: configuration.RunSettings, options: argparse.Namespace) -> str:
    """Whole runs overlap their waits. One process for a run that must keep the spec's order
    (--area-by-area, -x), checks a small part (--only, -k), or dials a server it did not start
    (--address): there every worker would share the one instance, and a check that fills its
    connection slots would meet the others' connections."""
    stepwise = options.exitfirst or settings.area_by_area or settings.only or options.keyword
    shared = any(spec.address is not None for spec in settings.specs.values())
    return "1" if stepwise or shared else WHOLE_RUN_WORKERS


def _workers(text: str) -> str:
    try:
        return configuration.parse_workers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("-n ")) from None


def list_requirements(options: argparse.Namespace) -> int:
    try:
        profile = profiles.named(configuration.parse_profile(options.profile))
        patterns = configuration.parse_only(options.pattern, profile.name)
    except UsageProblem as problem:
        print(f"sockspec list: {str(problem).removeprefix('--only ')}", file=sys.stderr)
        return EXIT_USAGE
    table = Table(title=f"{profile.title} requirements ({profile.spec_file})")
    for column in ("ID", "level", "feature", "title"):
        table.add_column(column)
    for requirement in requirements.load(profile=profile.name).values():
        if configuration.matches(requirement.id, patterns):
            table.add_row(requirement.id, requirement.level, ",".join(requirement.features) or "-", requirement.title)
    Console(width=120).print(table)
    return EXIT_OK


def explain_requirement(options: argparse.Namespace) -> int:
    wanted = options.id.strip().upper()
    try:
        requirement = requirements.get(wanted)
    except KeyError:
        try:
            owner = next((p for p in profiles.PROFILES.values() if p.owns(wanted)), profiles.named(profiles.DEFAULT))
            configuration.parse_only(wanted, owner.name)
            hint = " (a pattern: use `sockspec list` for several)"
        except UsageProblem as problem:
            hint = str(problem).removeprefix(f"--only {wanted}: no requirement matches")
        print(f"sockspec explain: {wanted} is not a requirement{hint}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{requirement.id} ({requirement.level}) — {requirement.title}")
    if requirement.features:
        print(f"Feature: {', '.join(requirement.features)} (optional; UNSUPPORTED unless the target declares it)")
    if requirement.applies_when:
        print(f"Applies when: {requirement.applies_when}")
    print()
    for paragraph in requirement.text.split("\n\n"):
        print(
            textwrap.fill(" ".join(paragraph.split()), width=100)
            if not paragraph.startswith(("```", "|"))
            else paragraph
        )
        print()
    return EXIT_OK


def merge_reports(options: argparse.Namespace) -> int:
    """Exit as the merged run would have: 0, 1 or 2 by its verdicts; 2 for a report that cannot be merged."""
    try:
        configuration.check_output_path("OUT.json", options.output)
        for flag in ("junit", "csv"):
            if getattr(options, flag):
                configuration.check_output_path(f"--{flag}", getattr(options, flag))
        if options.html:
            configuration.check_output_directory("--html", options.html)
        targets, facts = merge.merge([merge.read(path) for path in options.inputs])
    except (UsageProblem, merge.ReportProblem) as problem:
        print(f"sockspec merge: {problem}", file=sys.stderr)
        return EXIT_USAGE
    files.write_reports(targets, facts, json_path=options.output, junit_path=options.junit, html_dir=options.html)
    if options.csv:
        grades.write_csv(files.to_json(targets, facts), Path(options.csv))
    sys.stdout.write(terminal.render(targets, verbose=False, color=sys.stdout.isatty(), facts=facts))
    return exit_code(targets, facts)


def run_matrix(options: argparse.Namespace) -> int:
    arch = options.arch or ("" if options.cmd else "all")
    try:
        if arch:
            resolve_architectures(arch)
        bases = resolve_bases(options.images)
        if options.dockerfile and not options.cmd:
            raise ValueError("--dockerfile needs --cmd: the command that starts your server in its image")
        if options.cmd:
            configuration.check_server_template(options.cmd, here=False)
    except (ValueError, UsageProblem) as error:
        print(f"sockspec matrix: {error}", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="sockspec-matrix-") as scratch:
        report = options.json or str(Path(scratch) / "report.json")
        args = [a for base in bases for a in ("--image", f"{base.key}:{arch}")] if arch else []
        if options.cmd:
            args += ["--cmd", options.cmd, *[a for base in bases for a in ("--cmd-image", base.key)]]
            if options.dockerfile:
                args += ["--dockerfile", options.dockerfile]
        for declaration in options.declare:
            args += ["--declare", declaration]
        if not options.no_client and not options.cmd:
            args += [a for base in bases for a in ("--client-image", base.key)]
        args += ["--json", report, "-n", options.workers, *["-v"] * options.verbose]
        for flag in ("junit", "html", "only", "seed"):
            if getattr(options, flag) is not None:
                args += [f"--{flag}", str(getattr(options, flag))]
        if options.strict:
            args.append("--sockspec-strict")
        code = _pytest(args)
        if Path(report).exists():
            print_matrix(json.loads(Path(report).read_text(encoding="utf-8")))
    return code


def print_matrix(report: dict[str, Any]) -> None:
    matrix = report.get("matrix")
    if not matrix:
        return
    differences = matrix.get("differences", [])
    if differences:
        first = Table(title="where the images disagree: look here first", title_justify="left")
        first.add_column("server")
        first.add_column("requirement")
        for image in matrix["images"]:
            first.add_column(image)
        for row in differences:
            first.add_row(row["arch"], row["id"], *(row["verdicts"].get(image, "-") for image in matrix["images"]))
        Console().print(first)
    table = Table(title="server x image: conformance (MUST failures)")
    table.add_column("server")
    cells = {(c["arch"], c["image"]): c for c in matrix["cells"]}
    for image in matrix["images"]:
        sample = next(c for c in matrix["cells"] if c["image"] == image)
        table.add_column(f"{image}\npython {sample['python']}\n{sample['openssl']}\n{sample.get('libc') or ''}")
    for arch in matrix["archs"]:
        row = [arch]
        for image in matrix["images"]:
            cell = cells.get((arch, image))
            if cell is None:
                row.append("-")
                continue
            mark = "[green]✓[/]" if cell["passes_every_must"] else "[bold red]✕[/]"
            level = cell["conformance"] or "no level"  # a partial, stopped or interrupted run gives none
            row.append(f"{mark} {level} ({cell['counts']['FAIL']} FAIL, {cell['counts']['ERROR']} ERROR)")
        table.add_row(*row)
    Console().print(table)


def run_suite(options: argparse.Namespace) -> int:
    defaults = {option.name: option.default for option in SHARED}

    def get(name: str) -> Any:
        if name == "sockspec_strict":
            return options.strict
        value = getattr(options, name)
        return defaults[name] if value is None else value

    try:
        settings = configuration.read(get)  # every option checked before anything starts
    except UsageProblem as problem:
        print(f"sockspec run: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if not settings.has_target:
        print(
            "sockspec run: no target; give --reference ARCH|all, --image IMAGE[:ARCH], "
            "--cmd TEMPLATE or --address HOST:PORT, or a client: --client-cmd TEMPLATE, "
            "--client-reference, --client-image IMAGE",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Each server target is started (or dialled) once before any check, so
    # that one that cannot answer costs one explanation, not one per check.
    unanswered = preflight.check_targets(settings, docker=None)
    if unanswered is not None:
        print(unanswered, file=sys.stderr)
        return EXIT_USAGE
    args = [arg for option in SHARED for arg in option.passed_on(options)]
    args.append("--sockspec-preflight-done")
    if options.strict:
        args.append("--sockspec-strict")
    workers = options.workers or _default_workers(settings, options)
    if workers and workers != "1":
        # worksteal: a worker that runs out takes unstarted checks from the others, so
        # a share dealt out early with many long checks does not make the run's tail.
        args += ["-n", workers, "--dist", "worksteal"]
    if options.keyword:
        args += ["-k", options.keyword]
    if options.exitfirst:
        args.append("-x")
    args += ["-v"] * options.verbose
    return _pytest(args, progress=Progress(targets=[*settings.specs, *settings.clients]))


def _pytest(args: list[str], progress: Progress | None = None) -> int:
    if "-v" not in args:
        args.append("-q")
    plugins: list[object] = []
    if progress is not None and "-v" not in args:
        # The suite's own progress and summary stand in for pytest's dots and tracebacks.
        args += ["--tb=no", "-rN", "-o", "console_output_style=classic"]
        args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]  # the suite is imported before pytest starts
        plugins.append(progress)
    try:
        code = int(pytest.main([str(CHECKS), "-p", "no:cacheprovider", "-p", "no:randomly", *args], plugins=plugins))
    except Exception:
        if reaper.interrupted_by() is None:
            raise
        # pytest can fail while it reports an interrupt that came at an awkward moment (in
        # its set-up, a traceback entry without a line number): the run was interrupted all
        # the same, and the user is told that, not pytest's traceback.
        raise KeyboardInterrupt from None
    # pytest's own codes for usage problems, internal errors and empty
    # selections all mean the suite could not judge: the contract says 2.
    return code if code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
