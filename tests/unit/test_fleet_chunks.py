"""Building a fleet a chunk at a time makes the same fleet, whatever the chunk's size."""

from dataclasses import asdict
from datetime import UTC, datetime

import pytest

from simulation.fleet import generate_chunks

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def joined(chunk: int) -> tuple[list[dict], dict[str, list[str]], list[dict]]:
    records, drift, expected = [], {}, []
    for part in generate_chunks(accounts=90, seed=5, drifting=40, now=NOW, chunk=chunk):
        records.extend(asdict(r) for r in part.records)
        drift.update(part.drift)
        expected.extend(part.expected_corrections)
    return records, drift, expected


def test_chunks_of_any_size_join_into_the_same_fleet():
    whole = joined(chunk=90)
    for chunk in (1, 7, 40):
        assert joined(chunk) == whole, chunk


def test_chunks_number_subs_customer_rows_on_from_the_previous_chunk():
    records, _, _ = joined(chunk=7)
    ids = [row["id"] for r in records for row in r["subs_customer"]]
    assert ids == list(range(1, len(ids) + 1))


def test_a_chunk_reports_the_drift_of_its_own_accounts_in_account_order():
    for part in generate_chunks(accounts=90, seed=5, drifting=40, now=NOW, chunk=20):
        numbers = [r.account_id for r in part.records]
        assert list(part.drift) == [a for a in numbers if a in part.drift]


@pytest.mark.parametrize("drifting", [-1, 91])
def test_drifting_must_fit_the_fleet(drifting):
    with pytest.raises(ValueError, match="drifting"):
        next(generate_chunks(accounts=90, seed=5, drifting=drifting, now=NOW))
