"""Bytes shown so a person can read them, with a caret where they go wrong."""

from __future__ import annotations

_NAMED = {0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t", 0x00: "\\0", 0x5C: "\\\\"}


def byte_text(value: int) -> str:
    if value in _NAMED:
        return _NAMED[value]
    if 0x20 <= value < 0x7F:
        return chr(value)
    return f"\\x{value:02x}"


def escape(data: bytes, limit: int = 400) -> str:
    shown = "".join(byte_text(b) for b in data[:limit])
    if len(data) > limit:
        shown += f"… (+{len(data) - limit} bytes)"
    return shown


def first_difference(expected: bytes, actual: bytes) -> int | None:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return index
    if len(expected) == len(actual):
        return None
    return min(len(expected), len(actual))


def with_caret(data: bytes, index: int, indent: str = "") -> str:
    """Two lines: the escaped bytes, and a caret under byte ``index``."""
    return f"{indent}{escape(data)}\n{indent}{' ' * caret_column(data, index)}^"


def caret_column(data: bytes, index: int) -> int:
    """Where byte ``index`` of ``data`` starts in ``escape(data)``."""
    return sum(len(byte_text(b)) for b in data[:index])
