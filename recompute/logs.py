"""The log of the long-running commands (`project --follow`, `serve`, `ingest --follow`): the standard
`logging` module, configured once here, on stderr, as `RECOMPUTE_LOG_FORMAT` says (cli.md):

    text   2026-12-06T23:01:02.345Z WARNING recompute.follow: the event store is gone: ...; retrying [source=eventstore]
    json   {"at": "2026-12-06T23:01:02.345Z", "level": "WARNING", "logger": "recompute.follow",
            "message": "...", "source": "eventstore"}

The code logs through `logging.getLogger("recompute.<area>")` and says what a line concerns with
`extra={"store": ..., "partition": ..., "source": ...}` (any of CONTEXT); it never prints. One line
per change of state (projections/follow/health.py keeps the state), never one per retry.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

CONTEXT = ("store", "source", "partition", "partitions", "owner")


def configure(log_format: str = "text") -> None:
    """Idempotent: the root `recompute` logger gets one stderr handler of `log_format`."""
    logger = logging.getLogger("recompute")
    for handler in list(logger.handlers):
        if getattr(handler, "recompute", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.recompute = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonLines() if log_format == "json" else TextLines())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _at(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {key: getattr(record, key) for key in CONTEXT if getattr(record, key, None) is not None}


class TextLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = f"{_at(record)} {record.levelname} {record.name}: {' '.join(record.getMessage().split())}"
        return f"{line} [{context}]" if context else line


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps({"at": _at(record), "level": record.levelname, "logger": record.name,
                             "message": " ".join(record.getMessage().split()), **_context(record)},
                            default=str).decode()
