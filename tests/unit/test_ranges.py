"""A fleet's streams split into one range per worker (projections/evaluation/ranges.split)."""

from __future__ import annotations

from projections.evaluation.ranges import split


def test_split_ranges_hold_every_id_once_and_about_as_many_each():
    ids = sorted(f"acct_{n:05d}" for n in range(1_001))
    ranges = split(ids, 3)

    held = [[a for a in ids if r.holds(a)] for r in ranges]
    assert sorted(a for part in held for a in part) == ids
    assert max(map(len, held)) - min(map(len, held)) <= 1
    assert ranges[0].lo is None and ranges[-1].hi is None, "ids beyond the sample are held too"


def test_fewer_ids_than_parts_make_one_open_range():
    assert [(r.lo, r.hi, r.ids) for r in split(["acct_1"], 2)] == [(None, None, None)]
