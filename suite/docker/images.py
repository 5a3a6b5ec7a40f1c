"""Images without a registry: Debian bases bootstrapped from the machine's
own mirror where no registry answers, and the project's images built on them
with the classic builder (docker-py has no BuildKit)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import profiles
from . import engine as docker_engine
from .engine import PROJECT, PROJECT_LABEL

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
BASE_REPOSITORY = "sockspec-base"
SERVER_REPOSITORY = "sockspec-server"
SUITE_REPOSITORY = "sockspec-suite"
USER_REPOSITORY = "sockspec-user"  # a user's server, built from their Dockerfile on one of our bases
CLIENT_REPOSITORY = "sockspec-client"
DNS_REPOSITORY = "sockspec-dns"
SOURCES_LABEL = "org.sockspec.sources"  # a digest of what an image was built from

Log = Callable[[str], None]


@dataclass(frozen=True)
class Base:
    key: str  # bookworm, trixie, ...
    pull: str | None  # an image to pull where a registry answers
    bootstrap: str | None  # a Debian release for debootstrap where none does

    @property
    def local_name(self) -> str:
        return f"{BASE_REPOSITORY}:{self.key}"


def load_bases(path: Path = DOCKER_DIR / "bases.toml") -> dict[str, Base]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {key: Base(key, value.get("pull"), value.get("bootstrap")) for key, value in data.items()}


def resolve_bases(spec: str) -> list[Base]:
    """``bookworm,trixie`` or ``all``; ValueError names an unknown base."""
    bases = load_bases()
    if spec == "all":
        return list(bases.values())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in bases]
    if unknown or not names:
        raise ValueError(f"unknown image {', '.join(unknown) or spec!r}; known: all, {', '.join(bases)}")
    return [bases[n] for n in names]


def _exists(engine: Any, name: str) -> bool:
    try:
        engine.images.get(name)
    except Exception:
        return False
    return True


def ensure_base(engine: Any, base: Base, log: Log = print, allow_pull: bool = True) -> str:
    """The base image, by its project-local name: already there, pulled, or bootstrapped."""
    if _exists(engine, base.local_name):
        return base.local_name
    if allow_pull and base.pull:
        try:
            log(f"pulling {base.pull} for {base.local_name}")
            image = engine.images.pull(base.pull)
            image.tag(BASE_REPOSITORY, base.key)
            return base.local_name
        except Exception as error:
            log(f"cannot pull {base.pull} ({str(error).splitlines()[0][:160]}); bootstrapping instead")
    if not base.bootstrap:
        raise RuntimeError(f"{base.key}: no registry answers and no release to bootstrap")
    bootstrap_base(engine, base, log)
    return base.local_name


def apt_mirror() -> str:
    """The Debian mirror apt on this machine is configured with."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[2] if parts[1].startswith("[") else parts[1]
    raise RuntimeError("no Debian mirror in apt's configuration; cannot bootstrap a base image")


def bootstrap_base(engine: Any, base: Base, log: Log = print) -> None:
    """debootstrap a minimal Debian with python3, and import it as the base."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    assert base.bootstrap is not None
    with tempfile.TemporaryDirectory(prefix=f"sockspec-rootfs-{base.key}-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        log(f"bootstrapping {base.bootstrap} into {rootfs} (about a minute)")
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3", base.bootstrap, str(rootfs), apt_mirror()],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        archive = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        engine.api.import_image_from_file(
            str(archive),
            repository=BASE_REPOSITORY,
            tag=base.key,
            changes=[f"LABEL {PROJECT_LABEL}={PROJECT}", f"LABEL org.sockspec.bootstrap={base.bootstrap}"],
        )
    log(f"imported {base.local_name}")


def build_server_image(engine: Any, base: Base, log: Log = print) -> str:
    """The reference-server image on ``base``; cached layers make a rebuild free."""
    return _package_image(engine, base, "reference_servers", SERVER_REPOSITORY, "reference-server.Dockerfile", log=log)


def build_client_image(engine: Any, base: Base, log: Log = print) -> str:
    """The reference client on ``base`` (python3 only), as the servers are."""
    return _package_image(engine, base, "reference_client", CLIENT_REPOSITORY, "reference-client.Dockerfile", log=log)


def _package_image(engine: Any, base: Base, package: str, repository: str, dockerfile: str, *, log: Log) -> str:
    """One standard-library package of the project on ``base``."""
    base_name = ensure_base(engine, base, log)
    tag = f"{repository}:{base.key}"
    source = Path(__file__).resolve().parents[2] / package
    with tempfile.TemporaryDirectory(prefix="sockspec-build-") as context:
        shutil.copytree(source, Path(context) / package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(DOCKER_DIR / dockerfile, Path(context) / "Dockerfile")
        _build(engine, context, tag, base_name, log)
    return tag


def build_dns_image(engine: Any, base: Base, log: Log = print) -> str:
    """The suite's DNS server (docker/zone_server.py) with dnslib, on ``base``.
    An image built from the same sources is reused as it is, without asking
    the package index again."""
    base_name = ensure_base(engine, base, log)
    tag = f"{DNS_REPOSITORY}:{base.key}"
    dnslib = [d for d in _dependencies(Path(__file__).resolve().parents[2]) if d.startswith("dnslib")]
    sources = hashlib.sha256(engine.images.get(base_name).id.encode())
    for part in ("zone_server.py", "dns-server.Dockerfile"):
        sources.update((DOCKER_DIR / part).read_bytes())
    sources.update(" ".join(dnslib).encode())
    with contextlib.suppress(Exception):
        if engine.images.get(tag).labels.get(SOURCES_LABEL) == sources.hexdigest():
            return tag
    with tempfile.TemporaryDirectory(prefix="sockspec-build-") as context:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        subprocess.run(
            [*pip, "download", "--no-deps", "--only-binary=:all:", "--dest", context, *dnslib],
            check=True,
            capture_output=True,  # pip's notes about this machine's index set-up are noise here
        )
        (wheel,) = Path(context).glob("dnslib-*.whl")
        wheel.rename(Path(context) / "dnslib.whl")
        shutil.copy(DOCKER_DIR / "zone_server.py", Path(context) / "zone_server.py")
        shutil.copy(DOCKER_DIR / "dns-server.Dockerfile", Path(context) / "Dockerfile")
        _build(engine, context, tag, base_name, log, labels={SOURCES_LABEL: sources.hexdigest()})
    return tag


def _build(
    engine: Any,
    context: str,
    tag: str,
    base_name: str,
    log: Log,
    *,
    labels: dict[str, str] | None = None,
    dockerfile: str = "Dockerfile",
) -> None:
    try:
        engine.images.build(
            path=context,
            dockerfile=dockerfile,
            tag=tag,
            buildargs={"BASE": base_name},
            labels={PROJECT_LABEL: PROJECT, **(labels or {})},
            rm=True,
            forcerm=True,
        )
    except Exception as error:
        build_log = getattr(error, "build_log", None) or []
        lines = [item.get("stream", "") or item.get("error", "") for item in build_log]
        raise RuntimeError(f"building {tag} failed: {error}\n{''.join(lines)[-3000:]}") from None
    log(f"image {tag} ready")


def build_suite_image(engine: Any, base: Base, log: Log = print) -> str:
    """The suite on ``base``, installed from a wheelhouse built here on the host:
    containers here cannot verify TLS to the package index, and verification
    is never turned off."""
    base_name = ensure_base(engine, base, log)
    python = image_facts(engine, base_name)["python"]
    tag = f"{SUITE_REPOSITORY}:{base.key}"
    with tempfile.TemporaryDirectory(prefix="sockspec-build-") as context:
        wheelhouse = Path(context) / "wheelhouse"
        build_wheelhouse(wheelhouse, python, log)
        shutil.copy(DOCKER_DIR / "suite.Dockerfile", Path(context) / "Dockerfile")
        _build(engine, context, tag, base_name, log)
    return tag


def build_wheelhouse(directory: Path, python: str, log: Log = print) -> None:
    """Wheels of sockspec and everything it needs, for CPython ``python`` on Linux."""
    root = Path(__file__).resolve().parents[2]
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sockspec-source-") as scratch:
        source = Path(scratch) / "sockspec"
        shutil.copytree(
            root,
            source,
            ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "tests"),
        )
        for profile in profiles.PROFILES.values():  # the suite reads each profile's spec
            shutil.copy(root / profile.spec_file, source / "suite" / profile.spec_file)
        log(f"building the sockspec wheel and downloading its dependencies for Python {python}")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        # A fixed timestamp makes the wheel the same bytes for the same source, so the image's install layer is cached.
        reproducible = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        subprocess.run(
            [*pip, "wheel", "--no-deps", "--wheel-dir", str(directory), str(source)], check=True, env=reproducible
        )
    major_minor = ".".join(python.split(".")[:2])
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]
    subprocess.run(
        [
            *pip,
            "download",
            "--dest",
            str(directory),
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            major_minor,
            *[arg for platform in platforms for arg in ("--platform", platform)],
            *_dependencies(root),
        ],
        check=True,
    )


def _dependencies(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return list(project["project"]["dependencies"])


# Asked with the shell, so that an image without Python (a user's Node server) still answers what it can.
FACTS_PROBE = (
    'python3 -c \'import ssl, sys; print("python", sys.version.split()[0]); print("openssl", ssl.OPENSSL_VERSION)\''
    " 2>/dev/null || { echo python none; openssl version 2>/dev/null | sed 's/^/openssl /'; }; "
    "echo libc $(ldd --version 2>&1 | head -n 1)"
)


def image_facts(engine: Any, image: str, labels: dict[str, str] | None = None) -> dict[str, str]:
    """The Python, OpenSSL and C library versions inside ``image`` (for the matrix report)."""
    # Created, run and removed explicitly (not run(remove=True)): an interrupt
    # in the middle must not leave the container behind.
    container = engine.containers.create(
        image, ["-c", FACTS_PROBE], entrypoint="sh", labels=labels or docker_engine.labels("facts")
    )
    try:
        container.start()
        container.wait(timeout=60)
        output = bytes(container.logs(stdout=True, stderr=False)).decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    facts = {"image": image, "python": "unknown", "openssl": "unknown", "libc": "unknown"}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key in ("python", "openssl") and value.strip():
            facts[key] = value.strip()
        elif key == "libc":
            facts["libc"] = libc_name(value)
    return facts


def libc_name(ldd_line: str) -> str:
    """ "ldd (Debian GLIBC 2.36-9+deb12u9) 2.36" -> "glibc 2.36"; musl and others as they say."""
    words = ldd_line.split()
    if "GLIBC" in ldd_line.upper() and words:
        return f"glibc {words[-1]}"
    return ldd_line.strip() or "unknown"


def local_facts() -> dict[str, str]:
    name, release = platform.libc_ver()
    return {
        "image": "local",
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "libc": f"{name} {release}".strip() or "unknown",
    }


def build_user_image(engine: Any, base: Base, dockerfile: Path, name: str, log: Log = print) -> str:
    """A user's server image, built from their Dockerfile (``ARG BASE`` and
    ``FROM ${BASE}``) on ``base``, with the Dockerfile's directory as context."""
    base_name = ensure_base(engine, base, log)
    tag = f"{USER_REPOSITORY}:{re.sub(r'[^a-z0-9_.-]+', '-', name.lower())}-{base.key}"
    _build(engine, str(dockerfile.resolve().parent), tag, base_name, log, dockerfile=dockerfile.name)
    return tag
