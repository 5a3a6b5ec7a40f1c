"""Who waited for whom: a concurrency check's connections over time, one row
per connection and a bar from each request's send to its reply. The HTML
report draws them, so serial, pooled and evented servers differ at a glance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Bar:
    start: float  # seconds since the timeline's origin: the request was sent
    end: float | None  # the reply arrived (None: it never did)
    outcome: str  # the reply as shown, or how the connection ended


@dataclass
class Row:
    label: str
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Timeline:
    title: str
    origin: float  # time.monotonic() of the timeline's zero
    rows: list[Row] = field(default_factory=list)
    note: str = ""
    bound: float | None = None  # seconds after the origin: the check's deadline, drawn as a line

    def bar(self, label: str, sent: float, replied: float | None, outcome: str) -> None:
        """A request sent at ``sent`` and answered at ``replied`` (monotonic times)."""
        row = next((r for r in self.rows if r.label == label), None)
        if row is None:
            row = Row(label)
            self.rows.append(row)
        end = round(replied - self.origin, 6) if replied is not None else None
        row.bars.append(Bar(round(sent - self.origin, 6), end, outcome))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["origin"]
        return data
