"""What a simulated Stripe account holds: its events and the current state of its objects.

On disk a world is a directory:

    events.jsonl          one Stripe event envelope per line (any order), the current API shape
    customers.jsonl       the current customer objects (deleted ones as {"id", "object", "deleted": true})
    subscriptions.jsonl   the current subscription objects
    invoices.jsonl        the current invoice objects
    meta.json             {"now": <unix seconds>}: the instant the world was generated at

The fleet generator writes it (`StripeWorldWriter`, a part at a time, with the events sorted by
(created, id)); the Stripe stand-in serves it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

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
                _write_lines(out, getattr(self, name))

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


class StripeWorldWriter:
    """Writes a world directory a part at a time, holding none of it: objects are appended in the
    order given; each part's events are sorted into a run file, and closing merges the runs into
    events.jsonl sorted by (created, id) (equal keys keep the order they were added in), as if the
    whole world's events had been sorted at once.

        with StripeWorldWriter(directory, now=now) as writer:
            writer.add(events=..., customers=..., subscriptions=..., invoices=...)
    """

    def __init__(self, directory: Path, *, now: int) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / "meta.json").write_bytes(orjson.dumps({"now": now}))
        self._objects: dict[str, IO[bytes]] = {name: (self._dir / f"{name}.jsonl").open("wb") for name in OBJECT_FILES}
        self._runs: list[Path] = []
        self.counts = dict.fromkeys(("events", *OBJECT_FILES), 0)

    def add(self, *, events: Iterable[dict[str, Any]], customers: Iterable[dict[str, Any]],
            subscriptions: Iterable[dict[str, Any]], invoices: Iterable[dict[str, Any]]) -> None:
        for name, items in (("customers", customers), ("subscriptions", subscriptions), ("invoices", invoices)):
            self.counts[name] += _write_lines(self._objects[name], items)
        run = self._dir / f".events.run{len(self._runs):05d}"
        with run.open("wb") as out:
            # Each line is prefixed by its sort key: "created (20 digits) id TAB"; a tab sorts before
            # any character of an id, so comparing the prefixes compares (created, id).
            for event in sorted(events, key=lambda e: (e["created"], e["id"])):
                out.write(f"{event['created']:020d} {event['id']}\t".encode())
                out.write(orjson.dumps(event))
                out.write(b"\n")
                self.counts["events"] += 1
        self._runs.append(run)

    def close(self) -> None:
        for out in self._objects.values():
            out.close()
        runs = [path.open("rb") for path in self._runs]
        try:
            with (self._dir / "events.jsonl").open("wb") as out:
                for line in heapq.merge(*runs, key=_sort_key):
                    out.write(line[line.index(b"\t") + 1:])
        finally:
            for f in runs:
                f.close()
            for path in self._runs:
                path.unlink()

    def __enter__(self) -> StripeWorldWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _sort_key(line: bytes) -> bytes:
    return line[:line.index(b"\t")]


def _write_lines(out: IO[bytes], items: Iterable[dict[str, Any]]) -> int:
    n = 0
    for item in items:
        out.write(orjson.dumps(item))
        out.write(b"\n")
        n += 1
    return n
