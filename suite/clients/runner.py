"""Running the client under test: on this machine, or in a container on the
run's internal network whose resolver is the suite's DNS server.

Either way the client runs under ``timed.run`` (in the container too, through
``docker exec``), so its time is measured next to it and a hung client is
killed at the deadline with its whole process group.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import reaper
from ..docker.images import load_bases
from . import timed
from .spec import ClientSpec, fill
from .zone import GOOD

TIMED_SOURCE = Path(timed.__file__).read_text(encoding="utf-8")
# Never mounted over a container's own system: a client found there is the image's.
SYSTEM_PATHS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var")

SHELL_NOT_FOUND = 127
THE_IMAGES_OWN = "the image's own"

EXIT_MEANINGS = {
    0: "success",
    1: "an error reply",
    2: "usage error",
    3: "DNS failure",
    4: "all connects failed",
    5: "timeout",
    6: "TLS failure",
    7: "protocol error",
}


@dataclass(frozen=True)
class ClientRun:
    argv: list[str]
    where: str
    status: int | None  # None: killed at the deadline
    elapsed: float
    deadline: float
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""  # the command could not be started at all

    @property
    def hung(self) -> bool:
        return self.status is None and not self.error

    def outcome(self) -> str:
        if self.error:
            return f"could not be started: {self.error}"
        if self.status is None:
            return f"still running after {self.deadline:g} s, killed"
        meaning = EXIT_MEANINGS.get(self.status, "not a status of section 17")
        return f"exit status {self.status} ({meaning}) after {self.elapsed:.2f} s"

    def describe(self) -> list[str]:
        """Lines for a failure's explanation."""
        lines = [
            f"The client under test ({self.where}):",
            f"  command: {shlex.join(self.argv)}",
            f"  result:  {self.outcome()}",
        ]
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = data.decode("utf-8", "replace").rstrip("\n")
            if len(text) > 1200:
                text = "… " + text[-1200:]
            lines.append(f"  {label}:  {text!r}" if text else f"  {label}:  (empty)")
        return lines


def _from_report(argv: list[str], where: str, deadline: float, report: dict[str, Any]) -> ClientRun:
    return ClientRun(
        argv,
        where,
        report["status"],
        float(report["elapsed"]),
        deadline,
        base64.b64decode(report["stdout"]),
        base64.b64decode(report["stderr"]),
        report.get("error", ""),
    )


@dataclass
class Placement:
    """Where a client runs, and how the suite's servers are reached from there."""

    where: str
    name: str  # a DNS name that leads to the suite's server (and to nothing else)
    ip: str  # the suite's server as an IP literal
    listen: list[str]  # addresses the suite's servers bind, all on one port
    ca_dir: Path | None = None

    def run(self, spec: ClientSpec, argv: list[str], deadline: float) -> ClientRun:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalPlacement(Placement):
    def __init__(self, ca_dir: Path) -> None:
        # localhost may resolve to ::1 too: the server answers there as well, so
        # that only the scenarios about resolution depend on the address order.
        listen = ["127.0.0.1"] + (["::1"] if _loopback6() else [])
        super().__init__("on this machine", "localhost", "127.0.0.1", listen, ca_dir)

    def run(self, spec: ClientSpec, argv: list[str], deadline: float) -> ClientRun:
        report = timed.run(argv, deadline, cwd=os.getcwd(), env=spec.env, started=reaper.track, ended=reaper.untrack)
        return _from_report(argv, self.where, deadline, report)


@dataclass
class ContainerPlacement(Placement):
    """A long-lived container per client and worker; each scenario is one
    ``docker exec`` in it."""

    docker: Any = None  # DockerEnvironment
    image: str = ""
    slot: int = 0
    mounts: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    not_mounted: list[str] = field(default_factory=list)  # the template's absolute paths left to the image
    image_option: bool = False  # --client-cmd-image chooses the image
    _container: Any = None

    @classmethod
    def for_spec(cls, docker: Any, spec: ClientSpec, ca_dir: Path, slot: int) -> ContainerPlacement:
        plan = docker.plan
        listen = [plan.gateway] + ([plan.gateway6] if plan.gateway6 and not docker.ipv6 else [])
        if spec.image is not None:
            image, workdir = docker.client_images[spec.image], None
            mounts = {str(ca_dir): str(ca_dir)}
        else:
            image, workdir = spec.container_image or f"sockspec-base:{_first_base()}", os.getcwd()
            mounts = {path: path for path in _paths_to_mount(spec, ca_dir)}
        where = f"in a container of {image} at {plan.client(slot)}, resolving through {plan.dns}"
        not_mounted = [p for p in _template_paths(spec) if not any(_within(p, m) for m in mounts)]
        return cls(
            where,
            GOOD,
            plan.gateway,
            listen,
            ca_dir,
            docker,
            image,
            slot,
            mounts,
            workdir,
            not_mounted,
            spec.image is None,
        )

    def _ensure(self) -> Any:
        if self._container is None:
            plan = self.docker.plan
            network = self.docker.internal_network
            engine = self.docker.engine
            container = engine.containers.create(
                self.image,
                ["infinity"],
                entrypoint=["sleep"],
                labels=self.docker.labels(),
                name=self.docker.container_name(),
                network=network,
                networking_config={network: engine.api.create_endpoint_config(ipv4_address=plan.client(self.slot))},
                dns=[plan.dns],
                volumes={host: {"bind": inside, "mode": "ro"} for host, inside in self.mounts.items()},
            )
            self._container = container
            container.start()
        return self._container

    def run(self, spec: ClientSpec, argv: list[str], deadline: float) -> ClientRun:
        container = self._ensure()
        request = json.dumps({"argv": argv, "deadline": deadline, "cwd": self.workdir, "env": spec.env})
        result = container.exec_run(["python3", "-c", TIMED_SOURCE, request], demux=True)
        out, err = result.output
        try:
            report = json.loads((out or b"").decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"running the client in {self.image} failed: {(err or b'').decode(errors='replace')[-800:]}"
                f"\n{self.setting()}"
            ) from None
        run = _from_report(argv, self.where, deadline, report)
        if run.status == SHELL_NOT_FOUND:
            # A shell in the template could not find the program: the image lacks it.
            stderr = run.stderr.decode(errors="replace").strip()
            run = dataclasses.replace(run, status=None, error=f"exit status 127 (the shell's 'not found'): {stderr}")
        if run.error:
            run = dataclasses.replace(run, error=f"{run.error}\n{self.setting()}")
        return run

    def setting(self) -> str:
        """Where the client ran, for an explanation of why it could not."""
        roles = {self.workdir: "the working directory", str(self.ca_dir): "the CA's directory"}
        mounted = ", ".join(f"{path} ({roles[path]})" if path in roles else path for path in self.mounts) or "nothing"
        lines = [
            f"It ran in a container of the image {self.image}, next to the suite's DNS server (the DNS scenarios need "
            f"that), working directory {self.workdir or THE_IMAGES_OWN}.",
            f"Mounted from this machine, read-only at the same paths: {mounted}.",
        ]
        if self.not_mounted:
            lines.append(
                f"Not mounted: {', '.join(self.not_mounted)} (system paths, or missing here): the image's own are used."
            )
        if self.image_option:
            lines.append(
                "If the image lacks what the command needs (its interpreter, its libraries), give "
                "--client-cmd-image IMAGE: an image that has them, and python3 (the suite times the client with it)."
            )
        return "\n".join(lines)

    def dns_queries(self) -> list[str]:
        """Every query the suite's DNS server has logged from this client's address."""
        try:
            server = self.docker.engine.containers.get(self.docker.dns_container_name())
            log = server.logs(stdout=True, stderr=False).decode(errors="replace")
        except Exception as error:  # the explanation goes on without it
            return [f"(the DNS server's log is unavailable: {error})"]
        me = f"from {self.docker.plan.client(self.slot)}"
        return [line for line in log.splitlines() if line.startswith("query ") and line.endswith(me)]

    def resolve(self, name: str) -> list[str] | str:
        """The addresses getaddrinfo gives for ``name`` in the client's
        container, in order (or why it failed)."""
        container = self._ensure()
        code = (
            "import socket, sys\n"
            "try: print(' '.join(i[4][0] for i in socket.getaddrinfo(sys.argv[1], 80, type=socket.SOCK_STREAM)))\n"
            "except OSError as e: print('!', e)"
        )
        output: str = container.exec_run(["python3", "-c", code, name]).output.decode().strip()
        return output[1:].strip() if output.startswith("!") else output.split()

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.remove(force=True)
            self._container = None


def _loopback6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _first_base() -> str:
    return next(iter(load_bases()))


def _template_paths(spec: ClientSpec) -> list[str]:
    """Every absolute path the templates name, in order, once each."""
    found: list[str] = []
    for template in spec.templates.values():
        for word in shlex.split(template):
            for piece in word.replace("=", " ").split():
                if piece.startswith("/") and "{" not in piece and piece not in found:
                    found.append(piece)
    return found


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _paths_to_mount(spec: ClientSpec, ca_dir: Path) -> list[str]:
    """The working directory, the CA's, and every absolute path a template
    names (its directory, for a file), at the same place inside."""
    found = {os.getcwd(), str(ca_dir), *spec.env.get("PYTHONPATH", "").split(os.pathsep)}
    for piece in _template_paths(spec):
        if Path(piece).exists():
            found.add(str(Path(piece).parent if Path(piece).is_file() else Path(piece)))
    usable = {p for p in found if p and p != "/" and not p.startswith(SYSTEM_PATHS)}
    # A directory inside another one mounted already comes with it.
    return sorted(p for p in usable if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in usable))


def command(
    spec: ClientSpec,
    feature: str | None,
    placement: Placement,
    *,
    host: str,
    port: int | str,
    cmd: str,
    edit: Callable[[str], str] | None = None,
) -> list[str]:
    template = spec.template(feature)
    assert template is not None
    if edit is not None:
        template = edit(template)
    ca = str(placement.ca_dir / "ca.pem") if placement.ca_dir else ""
    return fill(template, host=host, port=str(port), ca=ca, cmd=cmd.split(" "))


# ---- usage errors a template can be made to give (CH-CLIENT-13) ---------------------------

UNKNOWN_FLAG = "--sockspec-no-such-flag"


def _sample(template: str) -> list[str]:
    """The template filled with recognisable values, to compare an edit with."""
    return fill(template, host="sockspec-host", port="4481", ca="/sockspec/ca.pem", cmd=["SOCKSPEC-CMD"])


def with_unknown_flag(template: str) -> str:
    """The template with an unknown flag before its first argument: the word
    that carries {host}, {port} or {cmd}, or the flag just before it (which may
    take that word as its value). ValueError with the reason when that leaves
    no word of its own for the flag."""
    found = [template.find(name) for name in ("{host}", "{port}", "{cmd}") if name in template]
    if not found:
        raise ValueError("the template names none of {host}, {port}, {cmd}")
    start = _word_start(template, min(found))
    flag = _word_start(template, len(template[:start].rstrip()))
    if template[flag:start].startswith("-"):
        start = flag
    if not template[:start].strip():
        raise ValueError(f"the template starts with its first argument ({template!r}): no program to give a flag")
    edited = f"{template[:start]}{UNKNOWN_FLAG} {template[start:]}"
    before, after = _sample(template), _sample(edited)
    own_word = after.count(UNKNOWN_FLAG) == 1 and [w for w in after if w != UNKNOWN_FLAG] == before
    in_a_script = [w.replace(f"{UNKNOWN_FLAG} ", "", 1) for w in after] == before and any(
        f" {UNKNOWN_FLAG} " in f" {w}" and " " in w.replace(f"{UNKNOWN_FLAG} ", "", 1) for w in after
    )
    if not (own_word or in_a_script):
        raise ValueError(f"the template's first argument is inside a word ({template!r}): no place for a flag")
    return edited


def _word_start(text: str, at: int) -> int:
    while at > 0 and not text[at - 1].isspace():
        at -= 1
    return at


def without_command(template: str) -> str:
    """The template without {cmd}: the client gets no COMMAND. ValueError with
    the reason when {cmd} is not a word (or quoted word) of its own."""
    if template.count("{cmd}") != 1:
        raise ValueError("the template does not name {cmd} exactly once")
    for quoted in ("'{cmd}'", '"{cmd}"', "{cmd}"):
        at = template.find(quoted)
        if at >= 0:
            break
    end = at + len(quoted)
    alone = (at == 0 or template[at - 1].isspace()) and (end == len(template) or template[end].isspace())
    if not alone:
        raise ValueError(f"{{cmd}} is part of a word of the template ({template!r}): it cannot be left out alone")
    edited = template[:at] + template[end:]
    before, after = _sample(template), _sample(edited)
    dropped = [w for w in before if w != "SOCKSPEC-CMD"]
    # `-c '{cmd}'`: the flag goes with its value, or the client would see a flag without one.
    flag = _word_start(template, len(template[:at].rstrip()))
    if template[flag:at].strip().startswith("-") and "=" not in template[flag:at]:
        edited = template[:flag] + template[end:]
        at_flag = before.index("SOCKSPEC-CMD") - 1
        dropped = [w for i, w in enumerate(before) if w != "SOCKSPEC-CMD" and i != at_flag]
        after = _sample(edited)
    in_a_script = [w for w in " ".join(before).split() if w != "SOCKSPEC-CMD"] == " ".join(after).split()
    if after != dropped and not in_a_script:
        raise ValueError(f"leaving {{cmd}} out of {template!r} changes more than the command")
    return edited
