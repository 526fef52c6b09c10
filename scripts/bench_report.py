"""Benchmark: `recompute report --html` at fleet sizes: the page's size, the time to gather its data
(a plan-like pass plus the event store's history and the top accounts' explanations) the time
to render it, with `plan` over the same fleet in the same run for the ratio, and the time headless
Chromium takes to open and draw it (beside a blank page's, in the same run).

    .venv/bin/python scripts/bench_report.py [--accounts 10000 100000] [--reuse]

Fleets live in databases named bench_report_<accounts>_<store> (kept with --reuse; built by
scripts/bench_plan.py's `ingested_fleet`). Each size's page is written to /tmp/bench_report_<accounts>.html.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_plan import NOW, ingested_fleet  # noqa: E402

from domain.rules import RULES_V1  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from projections.plan import plan  # noqa: E402
from projections.report.data import gather  # noqa: E402
from projections.report.render import render_html, save  # noqa: E402


def bench(accounts: int, reuse: bool) -> None:
    dsns = ingested_fleet(accounts, accounts * 691 // 10_000, reuse=reuse, prefix="bench_report")
    started = time.perf_counter()
    planned = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=2)
    plan_seconds = time.perf_counter() - started
    started = time.perf_counter()
    data = gather(Stores.from_dsns(dsns), RULES_V1, NOW, workers=2)
    gather_seconds = time.perf_counter() - started
    renders = []
    for _ in range(5):
        started = time.perf_counter()
        html = render_html(data, generated_at=datetime.now(UTC))
        renders.append(time.perf_counter() - started)
    path = Path(f"/tmp/bench_report_{accounts}.html")
    size = save(path, html)
    assert data.fleet.accounts_disagreeing == planned.accounts_disagreeing
    page_seconds, blank_seconds = browser_seconds(path), browser_seconds(BLANK)
    print(f"{accounts:>7,} accounts ({planned.accounts_disagreeing:,} disagreeing): page {size / 1024:,.0f} KiB "
          f"({len(data.explanations)} accounts explained in it); gather {gather_seconds:.1f} s, plan "
          f"{plan_seconds:.1f} s (gather / plan {gather_seconds / plan_seconds:.2f}); render "
          f"{min(renders) * 1000:.0f} ms best of 5, {max(renders) * 1000:.0f} ms worst; headless Chromium loads and "
          f"draws it in {page_seconds:.2f} s, a blank page in {blank_seconds:.2f} s (median of 3, browser start "
          f"included) -> {path}", flush=True)


BLANK = Path("/tmp/bench_report_blank.html")


def browser_seconds(page: Path) -> float:
    """Chromium's wall time to open `page`, lay it out and screenshot it (the median of 3 runs)."""
    BLANK.write_text("<!DOCTYPE html><title>blank</title>")
    timings = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={scratch}/profile", f"--screenshot={scratch}/page.png",
                            "--window-size=1400,2400", page.resolve().as_uri()], capture_output=True, check=True)
            timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    for accounts in args.accounts:
        bench(accounts, args.reuse)


if __name__ == "__main__":
    main()
