"""What a simulated Stripe account holds: its events and the current state of its objects.

On disk a world is a directory:

    events.jsonl          one Stripe event envelope per line (any order), the current API shape
    customers.jsonl       the current customer objects (deleted ones as {"id", "object", "deleted": true})
    subscriptions.jsonl   the current subscription objects
    invoices.jsonl        the current invoice objects
    meta.json             {"now": <unix seconds>}: the instant the world was generated at

The fleet generator writes it; the Stripe stand-in serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from simulation.gc_pause import collector_paused

OBJECT_FILES = ("customers", "subscriptions", "invoices")


@dataclass
class StripeWorld:
    now: int
    events: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "meta.json").write_bytes(orjson.dumps({"now": self.now}))
        for name in ("events", *OBJECT_FILES):
            with (directory / f"{name}.jsonl").open("wb") as out:
                for item in getattr(self, name):
                    out.write(orjson.dumps(item))
                    out.write(b"\n")

    @classmethod
    def load(cls, directory: Path) -> StripeWorld:
        meta = orjson.loads((directory / "meta.json").read_bytes())
        world = cls(now=int(meta["now"]))
        with collector_paused():
            for name in ("events", *OBJECT_FILES):
                path = directory / f"{name}.jsonl"
                if path.exists():
                    with path.open("rb") as lines:
                        setattr(world, name, [orjson.loads(line) for line in lines if line.strip()])
        return world
