"""The report's page: report.j2 (beside this file) filled with ReportData and the charts' geometry.

No script, no network: the charts are inline SVG, the styles inline; the file opens anywhere.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from projections.report.aggregate import AGES, STAGE_COPIES, STAGES
from projections.report.charts import (
    LAG_COLOURS,
    STATUS_COLOURS,
    STORE_COLOURS,
    columns_over_time,
    drift_grid,
    hbars,
    heatmap,
    lag_over_time,
    stage_bars,
)
from projections.report.data import ReportData

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("projections.report", "."), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(data: ReportData, *, generated_at: datetime) -> str:
    return _ENV.get_template("report.j2").render(**page(data), generated_at=generated_at)


def page(data: ReportData) -> dict[str, Any]:
    """What the template shows, from the data: numbers, tables and the charts' geometry."""
    fleet, history = data.fleet, data.history
    by_table: Counter[str] = Counter()
    for r in history.applied:
        by_table[r["table"]] += r["n"]
    outbox: dict[str, dict[str, int]] = {}
    for r in history.outbox:
        outbox.setdefault(r["type"], {})[r["status"]] = r["n"]
    held = [{"table": t, "reason": reason, "n": n, "examples": fleet.held_examples.get((t, reason), [])}
            for (t, reason), n in sorted(fleet.held.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {
        "data": data, "fleet": fleet, "history": history,
        "heatmap": heatmap(fleet.cells, fleet.accounts_checked),
        "cells": sorted(((t, c, n, fleet.corrections_by_cell[(t, c)]) for (t, c), n in fleet.cells.items()),
                        key=lambda row: (-row[2], row[0], row[1])),
        "stages": stage_bars(fleet.stages), "stage_names": STAGES, "stage_series": ["true", *STAGE_COPIES],
        "applied": columns_over_time(history.applied) if history.applied else None,
        "lag": lag_over_time(data.lag) if data.lag else None, "lag_colours": LAG_COLOURS,
        "applied_by_table": sorted(by_table.items()), "applied_total": sum(by_table.values()),
        "outbox": hbars(sorted(outbox.items()), STATUS_COLOURS, label_w=200) if outbox else None,
        "outbox_rows": sorted(outbox.items()), "outbox_total": sum(r["n"] for r in history.outbox),
        "parked": hbars([(f"{p['source']} {p['table']}: {p['reason']}", {"records": p["n"]}) for p in history.parked],
                        {"records": "#aa3377"}, label_w=320) if history.parked else None,
        "held": held, "held_total": sum(fleet.held.values()),
        "top": fleet.top, "store_colours": STORE_COLOURS, "status_colours": STATUS_COLOURS,
        "examples": sorted(fleet.examples, key=lambda c: (c.table, c.column or "", c.account_id))[:12],
        "drift_grid": drift_grid(fleet.drift_corrections, fleet.drift_accounts),
        "drift_total": sum(fleet.drift_corrections.values()),
        "drift_rows": sorted(((o, c, n, fleet.drift_accounts[(o, c)]) for (o, c), n in fleet.drift_corrections.items()),
                             key=lambda row: (-row[2], row[0], row[1])),
        "drift_age": hbars([(label, {"accounts": fleet.drift_age.get(label, 0)}) for label, _ in AGES],
                           {"accounts": "#ee6677"}, label_w=140),
        "rewritten": sorted(fleet.rewritten.items(), key=lambda kv: (-kv[1], kv[0])),
        "rewritten_after": [(label, fleet.rewritten_after.get(label, 0)) for label, _ in AGES],
        "patterns": fleet.top_patterns(),
    }


class BadReportPath(ValueError):
    """The report cannot be written where asked; the message says where and why, in a line."""


def check_path(path: Path) -> None:
    """Before the work: the file's folder exists and is writable, and the file is not a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise BadReportPath(f"--html {path}: is a directory")
    if not folder.is_dir():
        raise BadReportPath(f"--html {path}: no directory {folder}")
    if not os.access(folder, os.W_OK):
        raise BadReportPath(f"--html {path}: cannot write in {folder}")


def save(path: Path, html: str) -> int:
    """Writes the page atomically (a temporary file beside it, then a rename); returns its size in bytes."""
    check_path(path)
    body = html.encode()
    fd, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise BadReportPath(f"--html {path}: {error.strerror}") from error
    return len(body)
