"""`recompute demo` (shared/spec/cli.md)."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from domain.rules import RULES_V1
from projections.apply.protocol import ApplyOptions, ApplyResult
from projections.apply.protocol import apply as apply_corrections
from recompute.cli.common import relay_line, relay_outbox
from recompute.cli.group import main
from recompute.settings import read_settings


def demo_apply_step(app, at: datetime) -> tuple[ApplyResult, str]:
    """`recompute demo`'s apply (recompute/demo.py), on its own freshly made databases: what it did,
    and a line on its events' relay."""
    result = apply_corrections(app.stores, RULES_V1, at, ApplyOptions(force=True))
    return result, relay_line(relay_outbox(app))


@main.command()
@click.option("--accounts", type=click.IntRange(50, 100_000), default=2_000, show_default=True)
@click.option("--drifting", type=click.IntRange(0), default=138, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--verbose", is_flag=True, help="Every step's details and the explanations in full.")
@click.option("--follow", is_flag=True, help="Then continuous projection: a webhook, a drift and a timer corrected live.")
def demo(accounts: int, drifting: int, seed: int, verbose: bool, follow: bool) -> None:
    """On the embedded default: a fleet with drift, ingest, plan, apply, plan again, explain one account."""
    from recompute.demo import run_demo

    if drifting > accounts:
        raise click.BadParameter(f"{drifting} drifting accounts out of {accounts}", param_hint="--drifting")
    run_demo(read_settings(), accounts=accounts, drifting=drifting, seed=seed, say=click.echo, apply_step=demo_apply_step,
             verbose=verbose)
    if follow:
        from recompute.demo_follow import run_follow

        if not run_follow(read_settings().data_dir, say=click.echo):
            sys.exit(1)
