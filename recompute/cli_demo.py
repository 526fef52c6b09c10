"""`recompute demo`, attached to the main command group."""

from __future__ import annotations

import click

from recompute.cli import main
from recompute.settings import read_settings


@main.command()
@click.option("--accounts", type=click.IntRange(50, 100_000), default=2_000, show_default=True)
@click.option("--drifting", type=click.IntRange(0), default=138, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
def demo(accounts: int, drifting: int, seed: int) -> None:
    """On the embedded default: a fleet with drift, ingest, plan, apply, plan again, explain one account."""
    from recompute.demo import run_demo

    if drifting > accounts:
        raise click.BadParameter(f"{drifting} drifting accounts out of {accounts}", param_hint="--drifting")
    apply_step = None
    try:
        from recompute.cli_apply import demo_apply_step as apply_step  # type: ignore[no-redef]
    except ImportError:
        pass
    run_demo(read_settings(), accounts=accounts, drifting=drifting, seed=seed, say=click.echo, apply_step=apply_step)
