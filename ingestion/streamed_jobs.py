"""Snapshot ingest beside change streams, shared by `ingest` and `project`: which snapshot jobs a
streamed store still needs, and running them while the streams keep being read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from ingestion.jobs import IngestJob, run_ingest
from ingestion.report import IngestReport


def snapshot_jobs(jobs: list[IngestJob], left: Mapping[str, Sequence[str]]) -> list[IngestJob]:
    """Pure: the jobs left for snapshots: a streamed store (a key of `left`) only for the tables its
    stream does not carry (`left[store]`), every other store whole."""
    kept = []
    for job in jobs:
        if job.source not in left:
            kept.append(job)
        elif left[job.source]:
            kept.append(dataclasses.replace(job, tables=tuple(left[job.source])))
    return kept


def snapshots_while_streaming(jobs: list[IngestJob], read_streams: Callable[[], object] | None, *,
                              workers: int) -> list[IngestReport]:
    """The snapshot jobs, while the streams go on being read (`read_streams()` called until they are
    done, each call waiting a little): a stream left unread for wal_sender_timeout (60 s) is cut off
    by its server."""
    if not jobs:
        return []
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_ingest, jobs, workers=workers)
        while read_streams is not None and not running.done():
            read_streams()
        return running.result()
