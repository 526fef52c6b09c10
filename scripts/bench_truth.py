"""Micro-benchmark: the truth per account (domain/truth.true_state, explain off) before and after
`_Timeline` (domain/dunning.py), in one run over the same facts.

    .venv/bin/python scripts/bench_truth.py [--eventstore DSN] [--accounts 3000]

"Before" is true_state with next_action / stage_since of tests/support/dunning_oracle.py (the
implementation before, which asks `standing` afresh at every instant). The facts are the kept
facts of a bench database (scripts/bench_read_model.py leaves them in
bench_readmodel_10000_eventstore); every account's result is checked equal both ways.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_plan import NOW  # noqa: E402

import domain.truth as truth  # noqa: E402
from domain.catalog import Catalog  # noqa: E402
from domain.dunning import DunningInvoice  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from projections.evaluation.kept_facts import decode  # noqa: E402
from tests.support import dunning_oracle  # noqa: E402

CATALOG = Catalog(plans={"free": ("api",), "pro": ("api", "sso")})


def per_account(facts: list, rounds: int = 3) -> tuple[float, list]:
    best = float("inf")
    states: list = []
    for _ in range(rounds):
        started = time.perf_counter()
        states = [truth.true_state(f, CATALOG, RULES_V1, NOW, explain=False) for f in facts]
        best = min(best, time.perf_counter() - started)
    return best / len(facts) * 1e6, states


def dunning_part(facts: list, since, action, rounds: int = 3) -> float:
    """µs an account in stage_since + next_action alone."""
    views = [[DunningInvoice(i.invoice_id, i.status, i.due_at, i.attempt_count) for i in f.invoices.values()]
             for f in facts]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for f, v in zip(facts, views, strict=True):
            since(f.dunning_history, RULES_V1, NOW)
            action(v, RULES_V1, NOW)
        best = min(best, time.perf_counter() - started)
    return best / len(facts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eventstore", default="postgresql://postgres@127.0.0.1:5432/bench_readmodel_10000_eventstore")
    parser.add_argument("--accounts", type=int, default=3000)
    args = parser.parse_args()
    with psycopg.connect(args.eventstore) as conn:
        data = [d for (d,) in conn.execute("SELECT facts FROM read_model_facts ORDER BY account_id LIMIT %s",
                                           (args.accounts,))]
    facts = [decode(d, NOW) for d in data]
    histories = sum(len(f.dunning_history) for f in facts) / len(facts)
    per_account(facts, rounds=1)  # warm up
    new = truth.next_action, truth.stage_since
    truth.next_action, truth.stage_since = dunning_oracle.next_action, dunning_oracle.stage_since  # type: ignore[assignment]
    try:
        before_us, before = per_account(facts)
    finally:
        truth.next_action, truth.stage_since = new
    after_us, after = per_account(facts)
    old_part = dunning_part(facts, dunning_oracle.stage_since, dunning_oracle.next_action)
    new_part = dunning_part(facts, truth.stage_since, truth.next_action)
    print(f"{len(facts):,} accounts' kept facts, {histories:.1f} dunning changes an account, at {NOW.isoformat()}")
    print(f"true_state, explain off: before {before_us:,.0f} µs an account, after {after_us:,.0f} µs: "
          f"{before_us / after_us:.2f}x; states {'equal' if before == after else 'DIFFER'}")
    print(f"stage_since + next_action alone: before {old_part:,.0f} µs, after {new_part:,.0f} µs: "
          f"{old_part / new_part:.2f}x")


if __name__ == "__main__":
    main()
