"""Benchmark: `recompute report --html` at fleet sizes: the page's size, the time to gather its data
(a plan-like pass plus the event store's history and the top accounts' explanations) and the time
to render it, with `plan` over the same fleet in the same run for the ratio.

    .venv/bin/python scripts/bench_report.py [--accounts 10000 100000] [--reuse]

Fleets live in databases named bench_report_<accounts>_<store> (kept with --reuse; built by
scripts/bench_plan.py's `ingested_fleet`). Each size's page is written to /tmp/bench_report_<accounts>.html.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_plan import NOW, ingested_fleet  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from projections.plan import plan  # noqa: E402
from projections.report.data import gather  # noqa: E402
from projections.report.render import render_html, save  # noqa: E402


def bench(accounts: int, reuse: bool) -> None:
    dsns = ingested_fleet(accounts, accounts * 691 // 10_000, reuse=reuse, name="bench_report")
    started = time.perf_counter()
    planned = plan(dsns, RULES_V1, NOW, workers=2)
    plan_seconds = time.perf_counter() - started
    started = time.perf_counter()
    data = gather(dsns, RULES_V1, NOW, workers=2)
    gather_seconds = time.perf_counter() - started
    renders = []
    for _ in range(5):
        started = time.perf_counter()
        html = render_html(data, generated_at=datetime.now(UTC))
        renders.append(time.perf_counter() - started)
    path = Path(f"/tmp/bench_report_{accounts}.html")
    size = save(path, html)
    assert data.fleet.accounts_disagreeing == planned.accounts_disagreeing
    print(f"{accounts:>7,} accounts ({planned.accounts_disagreeing:,} disagreeing): page {size / 1024:,.0f} KiB "
          f"({len(data.explanations)} accounts explained in it); gather {gather_seconds:.1f} s, plan "
          f"{plan_seconds:.1f} s (gather / plan {gather_seconds / plan_seconds:.2f}); render "
          f"{min(renders) * 1000:.0f} ms best of 5, {max(renders) * 1000:.0f} ms worst -> {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    for accounts in args.accounts:
        bench(accounts, args.reuse)


if __name__ == "__main__":
    main()
