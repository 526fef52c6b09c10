"""The report's charts as geometry for inline SVG (report.j2 draws it). Pure.

Every drawn mark carries its number (the template writes it as a data- attribute, and a <title>
for a tooltip), so what a browser draws can be checked against what `plan` reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.diff import CAUSES
from domain.legacy_tables import BY_NAME, CORRECTION_ORDER, STORES, correctable
from projections.report.aggregate import STAGE_COPIES, STAGES

STORE_COLOURS = {"cf_prod": "#4477aa", "billing_prod": "#ee6677", "subs": "#228833"}
SERIES_COLOURS = {"true": "#333333", "billing_prod.dunning": STORE_COLOURS["billing_prod"],
                  "subs.subs_dunning": STORE_COLOURS["subs"]}
STATUS_COLOURS = {"sent": "#228833", "ready": "#ccbb44", "held": "#aa3377", "void": "#bbbbbb"}
LAG_COLOURS = {"p50": "#4477aa", "p99": "#ee6677", "max": "#bbbbbb"}


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    w: float
    h: float
    value: float
    label: str
    colour: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    ink: str = "#222222"  # the colour of text drawn on it


Text = tuple[float, float, str, str]  # (x, y, text, anchor)


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    marks: list[Mark]
    texts: list[Text]


def table_columns(table: str) -> list[str]:
    """The cells of a table's row in the disagreement matrix: its compared columns, then (insert), (delete)."""
    spec = correctable(BY_NAME[table])
    return [*spec.compared, *(["(insert)"] if spec.insert else []), *(["(delete)"] if spec.delete else [])]


def heatmap(cells: Mapping[tuple[str, str], int], accounts_checked: int) -> Chart:
    """One row per correctable table (by store), one cell per column: accounts drifting there."""
    label_w, cell_w, cell_h, gap, top = 200, 172, 38, 4, 6
    tables = sorted(CORRECTION_ORDER, key=lambda t: (STORES.index(t.split(".")[0]), t))
    rows = [(t, table_columns(t)) for t in tables]
    drawn = {(t, c) for t, columns in rows for c in columns}
    rows += [(t, [c]) for t, c in sorted(set(cells) - drawn)]  # none today; never drop a count
    peak = max(cells.values(), default=0)
    marks: list[Mark] = []
    texts: list[Text] = []
    for i, (table, columns) in enumerate(rows):
        y = top + i * (cell_h + gap)
        texts.append((label_w - 10, y + cell_h / 2 + 5, table, "end"))
        for j, column in enumerate(columns):
            n = cells.get((table, column), 0)
            share = n / accounts_checked if accounts_checked else 0.0
            marks.append(Mark(label_w + j * (cell_w + gap), y, cell_w, cell_h, n, column, heat(n, peak),
                              {"table": table, "column": column, "share": f"{share:.2%}"},
                              ink="#ffffff" if peak and n / peak > 0.4 else "#222222"))
    width = label_w + max(len(c) for _, c in rows) * (cell_w + gap)
    return Chart(width, top + len(rows) * (cell_h + gap), marks, texts)


def drift_grid(corrections: Mapping[tuple[str, str], int], accounts: Mapping[tuple[str, str], int]) -> Chart:
    """Drift by owner (rows) and cause (columns): each cell's corrections, with its accounts beside."""
    label_w, cell_w, cell_h, gap, top = 200, 172, 38, 4, 24
    owners = sorted({owner for owner, _ in corrections})
    peak = max(corrections.values(), default=0)
    marks: list[Mark] = []
    texts: list[Text] = [(label_w + j * (cell_w + gap) + 8, top - 8, cause, "start") for j, cause in enumerate(CAUSES)]
    for i, owner in enumerate(owners):
        y = top + i * (cell_h + gap)
        texts.append((label_w - 10, y + cell_h / 2 + 5, owner, "end"))
        for j, cause in enumerate(CAUSES):
            n = corrections.get((owner, cause), 0)
            marks.append(Mark(label_w + j * (cell_w + gap), y, cell_w, cell_h, n, f"{owner} {cause}", heat(n, peak),
                              {"owner": owner, "cause": cause, "accounts": accounts.get((owner, cause), 0),
                               "share": f"{accounts.get((owner, cause), 0):,} accounts"},
                              ink="#ffffff" if peak and n / peak > 0.4 else "#222222"))
    return Chart(label_w + len(CAUSES) * (cell_w + gap), top + len(owners) * (cell_h + gap), marks, texts)


def heat(n: int, peak: int) -> str:
    """White-grey for none, then light to dark red by the share of the largest cell."""
    if n == 0 or peak == 0:
        return "#f4f4f4"
    t = 0.12 + 0.88 * n / peak
    r, g, b = (255 + (165 - 255) * t, 235 + (15 - 235) * t, 225 + (21 - 225) * t)
    return f"#{int(r):02x}{int(g):02x}{int(b):02x}"


def stage_bars(stages: Mapping[str, Mapping[str, int]]) -> Chart:
    """Accounts by dunning stage: the true stage beside each store's copy, one group per stage."""
    series = ["true", *STAGE_COPIES]
    names = list(STAGES) + sorted({s for counts in stages.values() for s in counts} - set(STAGES))
    label_w, bar_h, gap, group_gap, plot_w = 110, 16, 2, 14, 560
    peak = max((n for counts in stages.values() for n in counts.values()), default=0) or 1
    marks: list[Mark] = []
    texts: list[Text] = []
    y = 4.0
    for stage in names:
        texts.append((label_w - 10, y + (len(series) * (bar_h + gap)) / 2 + 4, stage, "end"))
        for s in series:
            n = stages.get(s, {}).get(stage, 0)
            w = max(plot_w * n / peak, 1.0 if n else 0.0)
            marks.append(Mark(label_w, y, w, bar_h, n, f"{stage}: {s}", SERIES_COLOURS[s],
                              {"stage": stage, "series": s}))
            texts.append((label_w + w + 6, y + bar_h - 4, f"{n:,}", "start"))
            y += bar_h + gap
        y += group_gap
    return Chart(label_w + plot_w + 80, y, marks, texts)


def columns_over_time(rows: Sequence[Mapping[str, Any]]) -> Chart:
    """Corrections applied per bucket, stacked by store (rows: {"at", "table", "n"})."""
    buckets = sorted({r["at"] for r in rows})
    by = {(r["at"], r["table"].split(".")[0]): 0 for r in rows}
    for r in rows:
        by[(r["at"], r["table"].split(".")[0])] += r["n"]
    totals = {b: sum(n for (at, _), n in by.items() if at == b) for b in buckets}
    peak = max(totals.values(), default=0) or 1
    left, plot_h, bar_w, gap = 50, 200, max(8.0, min(40.0, 720 / max(len(buckets), 1) - 4)), 4
    marks: list[Mark] = []
    texts: list[Text] = [(left - 6, 14, f"{peak:,}", "end"), (left - 6, plot_h + 10, "0", "end")]
    for i, b in enumerate(buckets):
        x, y = left + i * (bar_w + gap), 10.0 + plot_h
        for store in STORES:
            n = by.get((b, store), 0)
            if not n:
                continue
            h = max(plot_h * n / peak, 1.0)
            y -= h
            marks.append(Mark(x, y, bar_w, h, n, f"{b.isoformat()[:16]} {store}", STORE_COLOURS[store],
                              {"store": store, "at": b.isoformat()}))
        if i in (0, len(buckets) - 1) or len(buckets) <= 8:
            texts.append((x + bar_w / 2, plot_h + 26, b.isoformat()[:16].replace("T", " "), "middle"))
    return Chart(max(left + len(buckets) * (bar_w + gap) + 60, 320), plot_h + 36, marks, texts)


def lag_over_time(rows: Sequence[Mapping[str, Any]]) -> Chart:
    """Correction lag per bucket (rows: {"at", "p50", "p99", "max"}, seconds): a group of three bars a bucket."""
    peak = max((r["max"] for r in rows), default=0.0) or 1.0
    left, plot_h, bar_w, gap = 50, 160, max(4.0, min(14.0, 720 / max(len(rows), 1) / 3 - 2)), 10
    marks: list[Mark] = []
    texts: list[Text] = [(left - 6, 14, f"{peak:.2f} s", "end"), (left - 6, plot_h + 10, "0", "end")]
    for i, r in enumerate(rows):
        x = left + i * (3 * bar_w + gap)
        for j, series in enumerate(LAG_COLOURS):
            h = max(plot_h * r[series] / peak, 1.0)
            marks.append(Mark(x + j * bar_w, 10.0 + plot_h - h, bar_w, h, round(r[series], 3),
                              f"{r['at'].isoformat()[:16]} {series}", LAG_COLOURS[series],
                              {"series": series, "at": r["at"].isoformat()}))
        if i in (0, len(rows) - 1) or len(rows) <= 6:
            texts.append((x + 1.5 * bar_w, plot_h + 26, r["at"].isoformat()[:16].replace("T", " "), "middle"))
    return Chart(max(left + len(rows) * (3 * bar_w + gap) + 80, 320), plot_h + 36, marks, texts)


def hbars(items: Sequence[tuple[str, Mapping[str, int]]], colours: Mapping[str, str], label_w: int = 260) -> Chart:
    """Horizontal bars, one per item, stacked by part (items: (label, {part: n}))."""
    bar_h, gap, plot_w = 18, 6, 480
    peak = max((sum(parts.values()) for _, parts in items), default=0) or 1
    marks: list[Mark] = []
    texts: list[Text] = []
    for i, (label, parts) in enumerate(items):
        y, x = 4 + i * (bar_h + gap), float(label_w)
        texts.append((label_w - 8, y + bar_h - 4, label if len(label) <= 40 else label[:39] + "…", "end"))
        for part, n in parts.items():
            if not n:
                continue
            w = max(plot_w * n / peak, 1.0)
            marks.append(Mark(x, y, w, bar_h, n, f"{label}: {part}", colours.get(part, "#777777"),
                              {"item": label, "part": part}))
            x += w
        texts.append((x + 6, y + bar_h - 4, f"{sum(parts.values()):,}", "start"))
    return Chart(label_w + plot_w + 80, 8 + len(items) * (bar_h + gap), marks, texts)
