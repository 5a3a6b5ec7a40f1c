"""The sockspec command: bad input gets a one-line reason and exit 2, never a
traceback; good input does what it says."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from suite.cli import _parser
from suite.options import SHARED, Option

REPO = Path(__file__).resolve().parents[1]


def sockspec(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "usage"),
        (("bogus",), "invalid choice"),
        (("run",), "no target"),
        (("run", "--reference", "nope"), "unknown architecture"),
        (("run", "--address", "localhost"), "HOST:PORT"),
        (("run", "--image", "nope"), "unknown image"),
        (("run", "--reference", "evented", "--declare", "x"), "KEY=VALUE"),
        (("run", "--reference", "evented", "--seed", "x"), "invalid int value"),
        (("run", "--reference", "evented", "--only", "CH-NONE-*"), "no requirement matches"),
        (("run", "--cmd", "python3 -m x --port {nope}"), "unknown placeholder"),
        (("run", "--client-cmd", "client {host} {nope}"), "unknown placeholder"),
        (("run", "--client-cmd", "client localhost {port} {cmd}"), "needs {host}"),
        (("run", "--client-cmd", "client 'unclosed {host}"), "bad client template"),
        (("run", "--client-cmd", "c {host}", "--client-cmd-for", "telepathy=c"), "FEATURE=TEMPLATE"),
        (("run", "--client-cmd-for", "tls=c {ca}"), "needs a --client-cmd"),
        (("run", "--client-image", "nope"), "unknown image"),
        (("run", "--client-reference", "--only", "CH-FRAME-1"), "selects no check"),
        (("matrix", "--images", "nope"), "unknown image"),
        (("matrix", "--arch", "nope"), "unknown architecture"),
        (("ping", "--reference", "nope"), "unknown architecture"),
        (("serve", "nope"), "invalid choice"),
        (("serve", "evented", "--port", "70000"), "not a port number"),
        (("serve", "evented", "--idle-timeout", "soon"), "not a number of seconds"),
        (("serve", "evented", "--tls-port", "0"), "--tls-port needs --cert"),
    ],
)
def test_bad_input_exits_2_with_a_reason_and_no_traceback(args: tuple[str, ...], message: str) -> None:
    result = sockspec(*args)
    output = result.stdout + result.stderr
    assert result.returncode == 2, f"sockspec {' '.join(args)}: expected exit 2, got {result.returncode}\n{output}"
    assert message in output, f"expected {message!r} in:\n{output}"
    assert "Traceback" not in output, output


def test_serve_with_a_busy_port_exits_1_with_a_reason() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "reference_servers", "evented", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as first:
        try:
            assert first.stdout is not None
            port = first.stdout.readline().split()[3]
            result = sockspec("serve", "serial", "--port", port, timeout=30)
            assert result.returncode == 1, result.stderr
            assert "cannot start" in result.stderr and "Traceback" not in result.stderr, result.stderr
        finally:
            first.terminate()
            first.wait(10)


def test_run_against_a_running_server_by_address(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "reference_servers", "thread-pool", "--port", "0"], stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            _, _, host, port = server.stdout.readline().split()[:4]
            result = sockspec(
                "run", "--address", f"{host}:{port}", "--only", "CH-CMD-*", "--junit", str(tmp_path / "j.xml")
            )
            assert result.returncode == 0, result.stdout[-3000:]
            assert (tmp_path / "j.xml").read_text().count("<testcase") >= 15
        finally:
            server.terminate()
            server.wait(10)


@pytest.mark.parametrize("option", SHARED, ids=lambda option: option.flag)
def test_run_hands_each_shared_option_to_the_plugin_unchanged(option: Option) -> None:
    given = {"switch": [option.flag], "repeat": [option.flag, "a=1", option.flag, "b=2"], "value": [option.flag, "7"]}
    cli = _parser().parse_args(["run", *given[option.kind]])
    plugin = argparse.ArgumentParser()
    for each in SHARED:
        plugin.add_argument(each.flag, **each.definition(for_plugin=True))
    passed_on = list(option.passed_on(cli))
    received = plugin.parse_args(passed_on)
    expected = {"switch": True, "repeat": ["a=1", "b=2"], "value": (option.type or str)("7")}[option.kind]
    assert getattr(received, option.name) == expected, f"{option.flag}: sockspec run passed on {passed_on}"


def test_pytest_failing_while_it_reports_an_interrupt_is_still_an_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest 9 can raise while it formats a KeyboardInterrupt that came during its
    own set-up (a traceback entry without a line number). The suite's logic: after
    an interrupt, any such failure is the interrupt; without one, it is a real error."""
    from suite import cli, reaper

    def pytest_main_failing(*args: object, **kwargs: object) -> int:
        raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'")

    monkeypatch.setattr(cli.pytest, "main", pytest_main_failing)
    monkeypatch.setattr(reaper, "_received", [])
    with pytest.raises(TypeError):
        cli._pytest([])
    reaper._received.append(2)  # SIGINT, as the handler records it
    with pytest.raises(KeyboardInterrupt):
        cli._pytest([])
