"""`recompute demo` (shared/spec/cli.md)."""

from __future__ import annotations

from datetime import datetime

import click

from domain.rules import RULES_V1
from projections.apply.protocol import ApplyOptions, apply as apply_corrections
from recompute.cli.common import relay_line, relay_outbox
from recompute.cli.group import main
from recompute.settings import read_settings


def demo_apply_step(wiring, at: datetime, say) -> None:
    """Step 4 of `recompute demo` (recompute/demo.py): apply on the demo's own, freshly made databases."""
    import time

    started = time.perf_counter()
    result = apply_corrections(wiring.dsns, RULES_V1, at, ApplyOptions(force=True))
    report = relay_outbox(wiring.dsns["eventstore"], wiring.settings.broker_url)
    say(f"4. apply ({time.perf_counter() - started:.1f}s): {result.count('applied')} corrections applied, "
        f"{result.count('stale')} stale, in {result.accounts_chosen} accounts; {result.events['ready']} domain "
        f"events; {relay_line(report)}")

@main.command()
@click.option("--accounts", type=click.IntRange(50, 100_000), default=2_000, show_default=True)
@click.option("--drifting", type=click.IntRange(0), default=138, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
def demo(accounts: int, drifting: int, seed: int) -> None:
    """On the embedded default: a fleet with drift, ingest, plan, apply, plan again, explain one account."""
    from recompute.demo import run_demo

    if drifting > accounts:
        raise click.BadParameter(f"{drifting} drifting accounts out of {accounts}", param_hint="--drifting")
    run_demo(read_settings(), accounts=accounts, drifting=drifting, seed=seed, say=click.echo, apply_step=demo_apply_step)
