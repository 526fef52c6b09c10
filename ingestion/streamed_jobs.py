"""Snapshot ingest beside change streams, shared by `ingest` and `project`: which snapshot jobs a
streamed store still needs, and running them while the streams keep being read.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from domain.legacy_tables import TABLES_BY_STORE
from ingestion.jobs import IngestJob, run_ingest
from ingestion.legacy.cdc.setup import published_tables
from ingestion.legacy.cdc.stream import LegacyChangeStream
from ingestion.report import IngestReport


def snapshot_jobs(jobs: list[IngestJob], streamed: list[str], dsns: dict[str, str]) -> list[IngestJob]:
    """The jobs left for snapshots: a streamed store only for its tables the stream does not carry."""
    left = []
    for job in jobs:
        if job.source not in streamed:
            left.append(job)
            continue
        published = published_tables(job.source, dsns[job.source])
        unpublished = tuple(spec.table for spec in TABLES_BY_STORE[job.source] if spec.table not in published)
        if unpublished:
            left.append(dataclasses.replace(job, tables=unpublished))
    return left


def snapshots_while_streaming(jobs: list[IngestJob], streams: list[LegacyChangeStream], *,
                              workers: int) -> list[IngestReport]:
    """The snapshot jobs, while the streams go on being read: a stream left unread for
    wal_sender_timeout (60 s) is cut off by its server."""
    if not jobs:
        return []
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_ingest, jobs, workers=workers)
        while streams and not running.done():
            for stream in streams:
                stream.poll(0.1)
        return running.result()
