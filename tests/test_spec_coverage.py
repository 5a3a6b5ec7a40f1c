"""Every requirement of every profile's spec (PROTOCOL.md, PROTOCOL-RESP2.md),
servers' and clients', is judged by at least one check, and every check
judges only requirements that exist."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import suite.checks
from suite import profiles, requirements


def marked_ids() -> dict[str, list[str]]:
    """Requirement ID -> the checks marked with it, in suite.checks and its subpackages (resp)."""
    found: dict[str, list[str]] = {}
    for module_info in pkgutil.walk_packages(suite.checks.__path__, prefix="suite.checks."):
        if not module_info.name.rsplit(".", 1)[-1].startswith("test_"):
            continue
        module = importlib.import_module(module_info.name)
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
        set(requirements.load_all()) - set(marked_ids()), key=lambda i: (i.split("-")[1], int(i.split("-")[2]))
    )
    assert not missing, f"requirements no check judges: {missing}"


def test_client_checks_judge_client_requirements_only() -> None:
    """A client check lives in a test_client module and names CLIENT IDs; a
    server check never does."""
    for requirement_id, checks in marked_ids().items():
        for check in checks:
            module = check.rsplit(".", 2)[-2]
            assert module.startswith("test_client") == ("-CLIENT-" in requirement_id), (
                f"{check} judges {requirement_id}"
            )


def test_checks_name_only_real_requirements() -> None:
    unknown = sorted(set(marked_ids()) - set(requirements.load_all()))
    assert not unknown, f"checks name requirements no spec has: {unknown}"


def test_a_check_of_several_profiles_is_written_against_the_dialect() -> None:
    """A check that judges requirements of two profiles speaks through the run's Dialect,
    never in one protocol's bytes."""
    by_check: dict[str, set[str]] = {}
    for requirement_id, checks in marked_ids().items():
        for check in checks:
            by_check.setdefault(check, set()).add(profiles.of_requirement(requirement_id).name)
    shared = [check for check, names in by_check.items() if len(names) > 1]
    assert shared, "no check is shared between the profiles"
    for check in shared:
        module_name, function_name = check.rsplit(".", 1)
        function = getattr(importlib.import_module(module_name), function_name)
        assert "dialect" in inspect.signature(function).parameters, f"{check} judges {by_check[check]}"


def test_the_spec_numbers_every_area_without_gaps() -> None:
    for profile in profiles.PROFILES:
        by_area: dict[str, list[int]] = {}
        for requirement in requirements.load(profile=profile).values():
            by_area.setdefault(requirement.area, []).append(requirement.number)
        for area, numbers in by_area.items():
            assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"{profile}: {area} is {sorted(numbers)}"
