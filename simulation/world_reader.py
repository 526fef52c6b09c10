"""A StripeReader over a world directory on disk, streamed: for benchmarks too large for the stand-in.

It answers what the Events API would (events of the last `retention_days`, newest first) and
what the list endpoints would (current objects, deleted customers left out), reading the
world's JSONL files line by line instead of holding the world in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

DAY = 86_400


class WorldFileReader:
    def __init__(self, directory: Path, *, retention_days: int = 30) -> None:
        self._dir = Path(directory)
        now = orjson.loads((self._dir / "meta.json").read_bytes())["now"]
        self._oldest = now - retention_days * DAY

    def events(self, *, created_gte: int | None) -> Iterator[dict[str, Any]]:
        floor = max(self._oldest, created_gte or 0)
        kept = [e for e in self._lines("events") if e["created"] >= floor]
        kept.sort(key=lambda e: (e["created"], e["id"]), reverse=True)
        return iter(kept)

    def listed(self, object_type: str) -> Iterator[dict[str, Any]]:
        return (o for o in self._lines(f"{object_type}s") if not o.get("deleted"))

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        return next((o for o in self._lines("customers") if o["id"] == customer_id), None)

    def _lines(self, name: str) -> Iterator[dict[str, Any]]:
        with (self._dir / f"{name}.jsonl").open("rb") as lines:
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)
