"""eventlog.one_row: the row of a statement that always returns one, typed as present."""

import pytest

from eventlog.one_row import one_row


def test_the_row_comes_back_as_it_is():
    assert one_row((3, "x")) == (3, "x")


def test_no_row_where_one_must_come_is_a_bug_that_raises():
    with pytest.raises(LookupError, match="returned none"):
        one_row(None)
