"""`recompute cdc setup|status|drop` (shared/spec/cli.md): each legacy database's change stream."""

from __future__ import annotations

import sys

import click

from domain.legacy_tables import STORES
from eventlog.stores import Error
from ingestion.legacy.cdc.replication import ReplicationError
from ingestion.legacy.cdc.setup import (
    ServerNotReady,
    SlotInUse,
    check_server,
    drop_store,
    owner_sql,
    setup_store,
    stream_status,
)
from ingestion.legacy.schema import blocked_tables, describe
from recompute.cli.common import RunFailed, app_or_exit, echo_json
from recompute.cli.group import main
from recompute.embedded import EmbeddedPostgresError, ensure_logical_decoding
from recompute.settings import DSN_VARIABLES, read_settings

_SOURCE = click.option("--source", type=click.Choice([*STORES, "all"]), default="all", show_default=True)


def _chosen(source: str) -> tuple[str, ...]:
    return STORES if source == "all" else (source,)


def _failed(error: Exception) -> RunFailed:
    return RunFailed(f"cdc failed: {' '.join(str(error).split())}")


@main.group()
def cdc() -> None:
    """The legacy databases' change streams (logical replication, pgoutput)."""


@cdc.command("setup")
@_SOURCE
@click.option("--print-sql", "print_sql", is_flag=True,
              help="Print what only the tables' owner may run (the publications), run nothing; then a role "
                   "with `recompute grants`' privileges runs `cdc setup` itself.")
def cdc_setup(source: str, print_sql: bool) -> None:
    """Creates each store's publication and replication slot and hands over from its snapshot."""
    stores = _chosen(source)
    app = app_or_exit(reads_legacy=stores, writes=not print_sql)
    if print_sql:
        try:
            click.echo("\n".join(owner_sql(store, app.stores) for store in stores))
        except Error as error:
            raise _failed(error) from error
        return
    if any(app.settings.dsns[store] is None for store in stores):
        try:
            if ensure_logical_decoding(read_settings().data_dir):
                click.echo("embedded PostgreSQL: set wal_level = logical and restarted it")
        except EmbeddedPostgresError as error:
            raise RunFailed(str(error)) from None
    lacking = []
    for store in stores:
        try:
            check_server(store, app.stores)
        except ServerNotReady as error:
            lacking.append(f"recompute: cdc setup: {DSN_VARIABLES[store]}: {error}")
        except Error as error:
            raise _failed(error) from error
    if lacking:  # nothing made anywhere: the DBA changes the settings, then runs setup again
        click.echo("\n".join(lacking), err=True)
        sys.exit(2)
    for store in stores:
        try:
            report = setup_store(store, app.stores)
        except ServerNotReady as error:
            click.echo(f"recompute: cdc setup: {DSN_VARIABLES[store]}: {error}", err=True)
            sys.exit(2)
        except (Error, ReplicationError, SlotInUse) as error:
            raise _failed(error) from error
        for table, reason in report.refused.items():
            click.echo(f"{store}.{table}: {reason}")
        tables = ", ".join(report.published) or "no tables"
        for table in report.newly_published:
            click.echo(f"{store}.{table}: now published; run `recompute ingest --resync` once to record what "
                       "changed in it since it was last read by snapshot")
        if report.repaired:
            click.echo(f"{store}: {report.repaired}; re-created the slot {report.slot} with its handoff "
                       f"(publication {report.publication}: {tables}): appended {report.appended} events; "
                       f"streaming from {report.position}")
        elif report.already:
            click.echo(f"{store}: already streaming (slot {report.slot}, publication {report.publication}: {tables}), "
                       f"recorded up to {report.position}")
        else:
            click.echo(f"{store}: slot {report.slot}, publication {report.publication} ({tables}); "
                       f"handoff appended {report.appended} events; streaming from {report.position}")


@cdc.command("status")
@_SOURCE
@click.option("--json", "as_json", is_flag=True)
@click.option("--warn-retained-mb", type=click.IntRange(1), default=1024, show_default=True,
              help="Warn when a slot retains more WAL than this.")
def cdc_status(source: str, as_json: bool, warn_retained_mb: int) -> None:
    """Each stream's position, its lag behind the server (bytes, seconds) and the WAL its slot retains."""
    app = app_or_exit(writes=False)
    try:
        streams = [stream_status(store, app.stores,
                                 warn_retained_bytes=warn_retained_mb << 20) for store in _chosen(source)]
        blocked = blocked_tables(app.stores)
    except Error as error:
        raise _failed(error) from error
    for s in streams:  # the store's tables whose schema is not the one read: their changes are not recorded
        s["blocked"] = {table: why for table, why in sorted(blocked.items()) if table.startswith(f"{s['source']}.")}
    if as_json:
        echo_json({"streams": streams})
        return
    for s in streams:
        for line in describe(s["blocked"]):
            click.echo(f"{s['source']}: {line}")
        snapshot = _by_snapshot(s)
        if s["state"] == "none":
            click.echo(f"{s['source']}: no stream ({s['warning']})")
            continue
        if not s["exists"]:
            click.echo(f"{s['source']}: broken: {s['reason']}; recorded up to {s['position']}{snapshot}")
            continue
        state = f"active (pid {s['active_pid']})" if s["active"] else "idle"
        line = (f"{s['source']}: " + (f"broken: {s['reason']}; " if s["state"] == "broken" else "")
                + f"slot {s['slot']} {state}, recorded up to {s['position']}, "
                f"server at {s['server_flush_lsn']}, lag {s['lag_bytes']} B / {s['lag_seconds']:.1f} s, "
                f"retains {s['retained_bytes'] / 2**20:.1f} MiB of WAL ({s['wal_status']}){snapshot}")
        click.echo(line + (f"; warning: {s['warning']}" if s.get("warning") else ""))


def _by_snapshot(stream: dict) -> str:
    tables = stream.get("snapshot_tables") or []
    if not tables:
        return ""
    why = f"not in publication {stream['publication']}" if stream["exists"] else "no slot"
    return f"; {', '.join(tables)} read by snapshot ({why})"


@cdc.command("drop")
@_SOURCE
def cdc_drop(source: str) -> None:
    """Removes what `setup` made (slot, publication, the stream's position): the store is left as it was."""
    app = app_or_exit(writes=False)
    for store in _chosen(source):
        try:
            removed = drop_store(store, app.stores)
        except (Error, SlotInUse) as error:
            raise _failed(error) from error
        click.echo(f"{store}: removed {', '.join(removed)}" if removed else f"{store}: nothing to remove")
