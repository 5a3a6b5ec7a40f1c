"""Benchmark: a class of 40 targets graded by `sockspec batch`.

The class: the seven reference servers, every server mutant of the catalogue
(tests/mutants) and the student servers of tests/servers (a passing asyncio
server, a socketserver one with two bugs, the guide's skeleton, one that
crashes on INCR, a Node.js server, ...), filled up to 40. It measures the
batch's wall time with -n 2, the suite's peak memory (the RSS of the batch and
every `sockspec run` under it, summed, the servers under test left out), and,
with --solo, whether each target's verdicts equal those of a run on its own
(-n 1: one target at a time, nothing beside it).

    .venv/bin/python scripts/bench_batch.py [--solo] [--out DIR]

A benchmark, not a test: it prints figures for the README and the notes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suite.targets.factory import reference_template  # noqa: E402
from suite.targets.reference import resolve_architectures  # noqa: E402
from tests.mutants import MUTANTS  # noqa: E402

PYTHON = shlex.quote(sys.executable)
SERVERS = ROOT / "tests" / "servers"
STUDENTS = [  # (name, working directory, command)
    ("student-asyncio", SERVERS, f"{PYTHON} asyncio_student.py --port {{port}} --idle {{idle}}"),
    ("student-socketserver", SERVERS, f"{PYTHON} no_pipelining_socketserver.py --port {{port}}"),
    ("student-skeleton", ROOT / "docs" / "skeleton", f"{PYTHON} server.py --port {{port}}"),
    ("student-crashes-on-incr", SERVERS, f"{PYTHON} crashes_on_incr.py --port {{port}}"),
    ("student-node", SERVERS / "node_student", "node server.js --port {port}"),
    ("student-no-info", SERVERS, f"{PYTHON} no_info.py --port {{port}}"),
    ("student-never-ready", SERVERS, f"{PYTHON} never_ready.py --port {{port}}"),
]


def manifest(directory: Path, size: int) -> Path:
    lines = ["[batch]", "time_budget = 300", ""]
    entries = [(arch, f'reference = "{arch}"', None) for arch in resolve_architectures("all")]
    for name, mutant in sorted(MUTANTS.items()):
        template = reference_template(mutant.arch, f"{PYTHON} -m tests.mutants {name}")
        entries.append((f"mutant-{name}", f"cmd = {json.dumps(template)}", ROOT))
    entries += [(name, f"cmd = {json.dumps(command)}", workdir) for name, workdir, command in STUDENTS]
    for name, kind, workdir in entries[:size]:
        lines += ["[[target]]", f'name = "{name}"', kind]
        if workdir is not None:
            lines.append(f"workdir = {json.dumps(str(workdir))}")
        lines.append("")
    path = directory / "class.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class PeakMemory:
    """The suite's own processes (the batch and each `sockspec run` with its
    pytest), sampled every 100 ms; the servers under test are left out."""

    def __init__(self, root: int) -> None:
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            total = 0
            try:
                family = [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]
            except psutil.Error:
                continue
            for process in family:
                try:
                    if "suite.cli" in " ".join(process.cmdline()) or process.pid == self.root:
                        total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def batch(path: Path, out: Path, workers: int, seed: int) -> tuple[float, int, dict[str, dict[str, str]], list]:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "suite.cli", "batch", str(path), "-n", str(workers), "--seed", str(seed),
         "--json", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    memory = PeakMemory(process.pid)
    output, _ = process.communicate()
    took = time.monotonic() - started
    peak = memory.stop()
    report = json.loads((out / "batch.json").read_text())
    verdicts = {t["name"]: {r["id"]: r["verdict"] for r in t["results"]} for t in report["targets"]}
    (out / "output.txt").write_text(output, encoding="utf-8")
    return took, peak, verdicts, json.loads((out / "grades.json").read_text())["rows"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--solo", action="store_true", help="also run one target at a time and compare verdicts")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=20261205)
    options = parser.parse_args()
    out = options.out or Path(tempfile.mkdtemp(prefix="sockspec-bench-batch-"))
    out.mkdir(parents=True, exist_ok=True)
    path = manifest(out, options.size)
    (out / "n2").mkdir(exist_ok=True)
    took, peak, verdicts, rows = batch(path, out / "n2", 2, options.seed)
    print(f"batch of {len(rows)} targets, -n 2: {took:.0f} s wall, suite peak RSS {peak / 2**20:.0f} MiB")
    for row in rows:
        print(f"  {row['target']:<36} {row['level']:<9} FAIL {row['FAIL']:>2}  first: {row['fix_first'] or '-'}")
    if options.solo:
        (out / "n1").mkdir(exist_ok=True)
        solo_took, _, solo, _ = batch(path, out / "n1", 1, options.seed)
        differing = {
            name: sorted(i for i in verdicts[name] if verdicts[name][i] != solo.get(name, {}).get(i))
            for name in verdicts
        }
        differing = {name: ids for name, ids in differing.items() if ids}
        print(f"one at a time (-n 1): {solo_took:.0f} s wall; targets whose verdicts differ: {differing or 'none'}")
    print(f"files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
