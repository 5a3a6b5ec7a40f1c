"""The published JSON Schema, applied to the reports real runs write."""

from __future__ import annotations

from typing import Any

import jsonschema

from suite.report import files


def validate_report(report: dict[str, Any]) -> None:
    """Raises jsonschema.ValidationError where a report departs from the schema it names."""
    schema = files.schema(report.get("schema", files.SCHEMA_VERSION))
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(report)
