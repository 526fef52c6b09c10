"""What one ingest run of one source did, for the command line and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TableReport:
    rows_read: int = 0
    appended: int = 0
    deleted: int = 0
    parked: int = 0
    blocked: str | None = None  # the table's schema is not the one recompute reads: why (not read at all)


@dataclass
class IngestReport:
    source: str
    tables: dict[str, TableReport] = field(default_factory=dict)
    waiting: int = 0  # Stripe objects left waiting for their customer to name an account (`run`: all of them)

    @property
    def blocked(self) -> dict[str, str]:
        return {table: t.blocked for table, t in self.tables.items() if t.blocked is not None}

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables.values())

    @property
    def appended(self) -> int:
        return sum(t.appended for t in self.tables.values())

    @property
    def parked(self) -> int:
        return sum(t.parked for t in self.tables.values())
