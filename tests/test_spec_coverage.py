"""Every requirement of PROTOCOL.md, servers' and clients', is judged by at
least one check, and every check judges only requirements that exist."""

from __future__ import annotations

import importlib
import pkgutil

import suite.checks
from suite import requirements


def marked_ids() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for module_info in pkgutil.iter_modules(suite.checks.__path__):
        if not module_info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"suite.checks.{module_info.name}")
        for name, function in vars(module).items():
            if not name.startswith("test"):
                continue
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "requirement":
                    for requirement_id in mark.args:
                        found.setdefault(requirement_id, []).append(f"{module_info.name}.{name}")
    return found


def test_every_requirement_has_a_check() -> None:
    missing = sorted(
        set(requirements.load()) - set(marked_ids()), key=lambda i: (i.split("-")[1], int(i.split("-")[2]))
    )
    assert not missing, f"requirements no check judges: {missing}"


def test_client_checks_judge_client_requirements_only() -> None:
    """A client check takes the `client` fixture and names CH-CLIENT IDs; a
    server check never does."""
    for requirement_id, checks in marked_ids().items():
        for check in checks:
            module = check.split(".")[0]
            assert module.startswith("test_client_") == requirement_id.startswith("CH-CLIENT-"), (
                f"{check} judges {requirement_id}"
            )


def test_checks_name_only_real_requirements() -> None:
    unknown = sorted(set(marked_ids()) - set(requirements.load()))
    assert not unknown, f"checks name requirements PROTOCOL.md does not have: {unknown}"


def test_the_spec_numbers_every_area_without_gaps() -> None:
    by_area: dict[str, list[int]] = {}
    for requirement in requirements.load().values():
        by_area.setdefault(requirement.area, []).append(requirement.number)
    for area, numbers in by_area.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"{area} is numbered {sorted(numbers)}"
