"""``sockspec ping``: start reference servers and see that each answers."""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.table import Table

from .targets.process import ServerProcess, TargetNotReady
from .targets.reference import reference_command, resolve_architectures
from .wire import Wire


def run(options: argparse.Namespace) -> int:
    try:
        archs = resolve_architectures(options.reference)
    except ValueError as error:
        print(f"sockspec ping: {error}", file=sys.stderr)
        return 2
    table = Table(title="CloudHash/1 reference servers")
    for column in ("architecture", "answers", "start (ms)", "round trip (ms)", "declared"):
        table.add_column(column)
    failures = 0
    for arch in archs:
        verdict, start_ms, rtt_ms, declared = _ping(arch, options.timeout)
        failures += verdict != "yes"
        table.add_row(arch, verdict, start_ms, rtt_ms, declared)
    Console().print(table)
    print(f"{len(archs) - failures} passed, {failures} failed")
    return 0 if failures == 0 else 1


def _ping(arch: str, timeout: float) -> tuple[str, str, str, str]:
    started = time.monotonic()
    with ServerProcess(reference_command(arch)) as server:
        try:
            endpoint = server.start(timeout=timeout)
        except TargetNotReady as error:
            return f"no: {error}", "-", "-", "-"
        start_ms = f"{(time.monotonic() - started) * 1000:.0f}"
        try:
            with Wire.connect(endpoint.host, endpoint.port, timeout=timeout) as wire:
                sent = time.monotonic()
                wire.send(b"PING\r\nINFO\r\n", timeout=timeout)
                pong = wire.read_line(timeout)
                rtt_ms = f"{(time.monotonic() - sent) * 1000:.1f}"
                info = wire.read_line(timeout) or b""
        except OSError as error:
            return f"no: {error}", start_ms, "-", "-"
        status = server.terminate(timeout=6)
        if pong != b"+PONG\r\n":
            return f"no: PING got {pong!r}", start_ms, "-", "-"
        if status != 0:
            return f"no: exit status {status} after SIGTERM", start_ms, rtt_ms, "-"
        pairs = dict(p.split("=", 1) for p in info.decode(errors="replace").strip()[1:].split() if "=" in p)
        declared = f"concurrency={pairs.get('concurrency')} overflow={pairs.get('overflow')}"
        return "yes", start_ms, rtt_ms, declared
