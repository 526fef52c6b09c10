"""Ingest runs as plain values that worker processes take, and the pool that runs them.

`run_ingest` splits each legacy store into its tables, all read in one snapshot the parent
exports per store (`pg_export_snapshot`, so the read stays consistent per database), and runs the
tables and the Stripe catch-up side by side in one pool. One Python process per unit of work is
what puts both cores to work; the units only meet at the log's table lock
(measured in scripts/bench_ingest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from eventlog.processes import worker_pool
from eventlog.stores import Stores
from ingestion.legacy.snapshot import LegacySnapshotIngester, TableIngest, exported_snapshot
from ingestion.report import IngestReport, TableReport
from ingestion.stripe.ingester import StripeIngester
from ingestion.stripe.reader import StripeApiReader


@dataclass(frozen=True)
class IngestJob:
    source: str  # cf_prod | billing_prod | subs | stripe
    stores: Stores
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    batch_size: int = 20_000
    tables: tuple[str, ...] | None = None  # a legacy store's tables to read (None: all; a stream reads the rest)

    def stripe_ingester(self) -> StripeIngester:
        """With STRIPE_API_KEY it polls and looks up customers; without, it only takes deliveries (serve)."""
        reader = StripeApiReader(api_key=self.stripe_api_key, api_base=self.stripe_api_base) \
            if self.stripe_api_key else None
        return StripeIngester(reader=reader, stores=self.stores, batch_size=min(self.batch_size, 5_000))

    def legacy_ingester(self) -> LegacySnapshotIngester:
        return LegacySnapshotIngester(store=self.source, stores=self.stores, batch_size=self.batch_size,
                                      tables=self.tables)


def _run(unit: IngestJob | TableIngest) -> IngestReport | TableReport:
    return unit.stripe_ingester().run() if isinstance(unit, IngestJob) else unit.run()


def run_ingest(jobs: Sequence[IngestJob], *, workers: int = 3) -> list[IngestReport]:
    """Runs the jobs (legacy stores table by table) in `workers` processes; one report per job, in order.

    A unit's error is re-raised here; what other units committed stands (each commits its own
    events with their digests or evt_ ids), so a rerun continues."""
    reports = {job.source: IngestReport(source=job.source) for job in jobs}
    with ExitStack() as snapshots:
        units: list[IngestJob | TableIngest] = [job for job in jobs if job.source == "stripe"]
        for job in jobs:
            if job.source != "stripe" and job.tables != ():
                snapshot = snapshots.enter_context(exported_snapshot(job.source, job.stores))
                units += job.legacy_ingester().table_runs(snapshot)
        if workers <= 1 or len(units) == 1:
            results = [_run(unit) for unit in units]
        else:
            with worker_pool(min(workers, len(units))) as pool:
                results = list(pool.map(_run, units))
    for unit, result in zip(units, results, strict=True):
        if isinstance(result, IngestReport):
            reports[result.source] = result
        else:
            reports[unit.spec.store].tables[unit.spec.table] = result
    return [reports[job.source] for job in jobs]
