"""The servers a benchmark measures: how each is started (always through
suite.targets.factory, as the conformance run starts it) and what its
process tree holds while it is measured.

A reference server is started with room for the benchmark's connections
(``--max-connections``) and with its own default of workers or threads (the
conformance run's 8 keep its floods quick; a benchmark measures the pattern
as shipped). redis-server, the baseline, is started without persistence, as
the RESP2 profile starts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from reference_servers.preforking import DEFAULT_WORKERS as PREFORKING_WORKERS
from reference_servers.thread_pool import DEFAULT_THREADS as THREAD_POOL_THREADS

from ..certs import CertificateFiles
from ..checks.connections import ProcessTree
from ..probe import HarnessError, Unsupported
from ..targets.base import Target
from ..targets.factory import SHARED_IDLE, TargetPool, TargetSpec, reference_sizing, reference_template

__all__ = ["BASELINE", "BenchTarget", "TreeSampler", "TreeUsage", "baseline", "given", "pss", "reference", "started"]

BASELINE = "redis-server"
REDIS_TEMPLATE = "redis-server --port {port} --save '' --appendonly no --timeout {idle} --maxclients {maxclients}"
IDLE = 300.0  # seconds: no connection of a benchmark is idle that long, however long a run is
POOL_SIZES = {"preforking": PREFORKING_WORKERS, "thread-pool": THREAD_POOL_THREADS}


@dataclass(frozen=True)
class BenchTarget:
    """A server to measure, and the protocol it speaks (the baseline speaks RESP2 in any run)."""

    spec: TargetSpec
    profile: str
    kind: str  # "reference", "cmd", "address" or "baseline"

    @property
    def name(self) -> str:
        return self.spec.name


def reference(arch: str, profile: str, room: int) -> BenchTarget:
    """One of our servers with room for ``room`` connections at once."""
    # The conformance run's sizing ends the template; the benchmark's takes its place.
    template = reference_template(arch, profile=profile).removesuffix(" " + " ".join(reference_sizing(arch, profile)))
    template += f" --max-connections {room}"
    if arch in POOL_SIZES:
        template += f" --concurrency {POOL_SIZES[arch]}"
    return BenchTarget(TargetSpec(name=arch, template=template, reference=True), profile, "reference")


def baseline() -> BenchTarget | None:
    """redis-server, when it is installed."""
    if shutil.which("redis-server") is None:
        return None
    return BenchTarget(TargetSpec(name=BASELINE, template=REDIS_TEMPLATE), "resp2", "baseline")


def given(spec: TargetSpec, profile: str) -> BenchTarget:
    """A --cmd or --address target, read by suite.configuration."""
    return BenchTarget(spec, profile, "address" if spec.template is None else "cmd")


@contextlib.contextmanager
def started(
    target: BenchTarget, certs: CertificateFiles, room: int, ready_timeout: float, timeout: float = 5.0
) -> Iterator[Target]:
    """The target, started (or dialled) as the conformance run does it, and
    stopped with its whole process group afterwards. Raises HarnessError with
    the reason when it does not start."""
    spec = target.spec
    # The factory starts a template without {idle} only with its default idle timeout.
    idle = SHARED_IDLE if spec.template is not None and "{idle}" not in spec.template else IDLE
    pool = TargetPool(
        {spec.name: dataclasses.replace(spec)},
        certs,
        {},
        timeout=timeout,
        ready_timeout=ready_timeout,
        profile=target.profile,
    )
    try:
        if not spec.controllable:
            yield pool.shared(spec.name)
            return
        with pool.fresh(spec.name, idle=idle, maxclients=room) as instance:
            yield instance
    except Unsupported as error:
        raise HarnessError(f"{spec.name}: {error}") from None
    finally:
        pool.close()


def command_line(target: Target) -> str | None:
    """The command line the target was started with, for the report."""
    process: Any = target.process
    argv = getattr(process, "argv", None)
    if isinstance(argv, list):
        return shlex.join(argv)
    return None


# ---- the process tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class TreeUsage:
    """The server's process tree over a stretch of time: the peaks of the sums."""

    rss: int  # bytes: the sum of resident sets over the tree, at its peak
    threads: int  # threads over the tree, at the peak
    processes: int  # processes in the tree, at the peak
    samples: int


class TreeSampler:
    """Samples the server's process tree on a thread of its own while a cell
    runs: RSS (resident set size) summed over the tree, threads and processes.

    RSS, not PSS: reading PSS costs the kernel a walk of every mapping, too
    dear to do during a cell; a forking server's sum therefore counts the
    pages its children share with the parent once per child (C10K reads PSS
    beside it, once, with every connection open)."""

    INTERVAL = 0.1  # seconds between samples: a few per cell, at a few milliseconds each

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peaks = [0, 0, 0]
        self._samples = 0

    def sample(self) -> tuple[int, int, int]:
        """(RSS bytes, threads, processes) over the tree now."""
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0, 0
        rss = threads = alive = 0
        for process in processes:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    threads += process.num_threads()
                alive += 1
            except psutil.NoSuchProcess:
                continue  # a child that ended while the tree was read
        return rss, threads, alive

    def __enter__(self) -> TreeSampler:
        self._take()
        self._thread = threading.Thread(target=self._run, name="tree sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._take()

    def usage(self) -> TreeUsage:
        rss, threads, processes = self._peaks
        return TreeUsage(rss, threads, processes, self._samples)

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self._take()

    def _take(self) -> None:
        values = self.sample()
        self._peaks = [max(peak, value) for peak, value in zip(self._peaks, values, strict=True)]
        self._samples += 1


def pss(pid: int, *, steady_within: float = 0.0) -> int | None:
    """Proportional set size summed over the tree (a shared page counts 1/n in
    each of its n processes; suite.checks.connections.ProcessTree reads it), once
    it holds still when ``steady_within`` seconds are given; None where it cannot be read."""
    try:
        tree = ProcessTree(pid)
        return tree.steady_memory(within=steady_within) if steady_within else tree.memory()
    except psutil.Error:
        return None
