"""Where drift comes from (domain/drift.py): the cause, since, owner, by and rewrites of each correction."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.diff import corrections_for
from domain.drift import Drift, PastCorrection, drift_origins, recorded_rows
from domain.events import AccountEvent
from domain.fold import fold
from domain.owners import NO_OVERRIDES, Owners, OwnersError, owners_from
from domain.rules import RULES_V1
from domain.truth import true_state
from tests.support.builders import (
    ACCOUNT,
    DAY,
    T0,
    Invoice,
    a_catalog,
    account_row,
    iso,
    legacy,
    stripe,
    stripe_invoice,
)

HOUR = timedelta(hours=1)
DUE = T0 - 10 * DAY  # the invoice fell due ten days before T0
DUNNING = "billing_prod.dunning"

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def frozen():
    with freeze_time(T0):
        yield


def dunning_row(stage: str, *, at: datetime, since: datetime | None = None) -> AccountEvent:
    """A3's billing_prod.dunning row as written at `at`."""
    row = {"account_id": ACCOUNT, "stage": stage, "stage_since": iso(since) if since else None, "updated_at": iso(at)}
    return legacy("billing_prod", "dunning", {"account_id": ACCOUNT}, row, at=at)


def invoice_paid(invoice: Invoice, *, at: datetime, evt: str = "evt_paid") -> AccountEvent:
    sid = f"in_{invoice.invoice_id}"
    return stripe("invoice", stripe_invoice(sid, "paid", attempts=invoice.attempts, amount_paid=4900), at=at, evt=evt)


def an_invoice(attempts: int = 2) -> Invoice:
    return Invoice(due_at=DUE, stripe_status="open", attempts=attempts)


def drift_of(events: list[AccountEvent], table: str = DUNNING, column: str | None = "stage", *, at: datetime = T0,
             past: tuple[PastCorrection, ...] = (), owners: Owners = NO_OVERRIDES) -> Drift:
    """The drift of the correction of `table`.`column` that a plan at `at` finds."""
    facts = fold(events, as_of=at)
    state = true_state(facts, a_catalog(), RULES_V1, at, explain=False)
    corrections = corrections_for(state, recorded_rows(facts))
    drifts = drift_origins(corrections, events, a_catalog(), RULES_V1, at, owners=owners, past=past)
    found = {(c.table, c.column): d for c, d in zip(corrections, drifts, strict=True)}
    assert (table, column) in found, f"no correction of {table}.{column}: {corrections}"
    return found[(table, column)]


def test_a_dunning_row_left_behind_by_a_stripe_payment_is_a_missed_change_since_the_payment():
    invoice = an_invoice()
    paid_at = DUE + 6 * DAY
    events = [account_row(), *invoice.events(), dunning_row("retrying", at=DUE + 3 * DAY + HOUR),
              invoice_paid(invoice, at=paid_at, evt="evt_1Paid")]
    drift = drift_of(events)
    assert drift == Drift(cause="missed_change", since=paid_at, owner="A3", by="evt_1Paid", rewrites=0)


def test_a_write_of_a_stage_the_truth_never_had_is_a_wrong_write_since_that_write():
    written = DUE + 5 * DAY
    events = [account_row(), *an_invoice().events(), dunning_row("final_notice", at=written)]
    drift = drift_of(events)
    assert (drift.cause, drift.since, drift.owner) == ("wrong_write", written, "A3")
    assert drift.by == "billing_prod.dunning[acc_000042]@" + events[-1].position


def test_a_write_and_a_truth_change_at_the_same_instant_blame_the_write_when_it_set_the_column():
    invoice = an_invoice()
    tie = DUE + 6 * DAY
    events = [account_row(), *invoice.events(), dunning_row("retrying", at=DUE + 3 * DAY + HOUR),
              dunning_row("grace", at=tie), invoice_paid(invoice, at=tie)]
    drift = drift_of(events)
    assert (drift.cause, drift.since, drift.by) == ("wrong_write", tie, f"{events[-2].store}.dunning[acc_000042]@"
                                                    f"{events[-2].position}")


def test_a_write_that_left_the_column_as_it_was_at_the_instant_the_truth_changed_is_a_missed_change():
    invoice = an_invoice()
    tie = DUE + 6 * DAY
    events = [account_row(), *invoice.events(), dunning_row("retrying", at=DUE + 3 * DAY + HOUR),
              dunning_row("retrying", at=tie, since=tie), invoice_paid(invoice, at=tie, evt="evt_1Tie")]
    drift = drift_of(events)
    assert (drift.cause, drift.since, drift.by) == ("missed_change", tie, "evt_1Tie")


def test_a_wrong_value_written_over_another_wrong_value_is_dated_by_the_write_that_set_it():
    invoice = an_invoice()
    written = DUE + 6 * DAY
    events = [account_row(), *invoice.events(), dunning_row("grace", at=DUE + HOUR),  # left behind at 3 days
              dunning_row("final_notice", at=written)]
    drift = drift_of(events)
    assert (drift.cause, drift.since) == ("wrong_write", written)


def test_drift_that_came_and_went_before_does_not_date_the_current_one():
    invoice = an_invoice()
    paid_at = DUE + 7 * DAY
    events = [account_row(), *invoice.events(),
              dunning_row("final_notice", at=DUE + HOUR),  # wrong, then put right
              dunning_row("grace", at=DUE + 2 * HOUR),
              dunning_row("retrying", at=DUE + 3 * DAY + HOUR),  # followed the crossing
              invoice_paid(invoice, at=paid_at, evt="evt_1Later")]
    drift = drift_of(events)
    assert (drift.cause, drift.since, drift.by) == ("missed_change", paid_at, "evt_1Later")


def test_a_threshold_crossing_the_row_did_not_follow_is_a_missed_change_by_the_rule_at_that_instant():
    events = [account_row(), *an_invoice(attempts=0).events(), dunning_row("grace", at=DUE + DAY)]
    drift = drift_of(events)
    crossing = DUE + 3 * DAY  # 3 days overdue: retrying
    assert (drift.cause, drift.since, drift.by) == ("missed_change", crossing, f"rule:retrying@{crossing.isoformat()}")


def test_a_row_never_written_is_missing_since_the_truth_first_called_for_it():
    events = [account_row(), *an_invoice(attempts=0).events()]
    drift = drift_of(events, column=None)
    assert (drift.cause, drift.since, drift.owner) == ("missing", DUE, "A3")
    assert drift.by == f"rule:grace@{DUE.isoformat()}"  # the invoice fell due: grace


def test_a_deleted_row_is_missing_since_its_deletion():
    deleted_at = DUE + 4 * DAY
    gone = legacy("billing_prod", "dunning", {"account_id": ACCOUNT}, None, at=deleted_at)
    events = [account_row(), *an_invoice().events(), dunning_row("grace", at=DUE + HOUR), gone]
    drift = drift_of(events, column=None)
    assert (drift.cause, drift.since, drift.by) == ("missing", deleted_at, f"billing_prod.dunning[acc_000042]@{gone.position}")


def test_history_that_starts_after_the_drift_dates_it_from_the_rows_first_observation():
    """The log first saw the dunning row (already wrong) after the account and its invoice: it cannot
    say how long the row had been wrong, only since when it knows."""
    first_seen = T0 - DAY
    events = [account_row(), *an_invoice().events(), dunning_row("none", at=first_seen)]
    drift = drift_of(events)
    assert (drift.cause, drift.since, drift.by) == ("wrong_write", first_seen, events[-1].position and
                                                    f"billing_prod.dunning[acc_000042]@{events[-1].position}")


def test_a_row_seen_before_its_account_is_wrong_since_its_first_observation():
    seen = DUE - 30 * DAY
    events = [dunning_row("suspended", at=seen), account_row(at=DUE - 20 * DAY), *an_invoice().events()]
    drift = drift_of(events)
    assert (drift.cause, drift.since) == ("wrong_write", seen)


def test_a_correction_written_over_again_is_an_overwrote_correction_and_counts_as_a_rewrite():
    invoice = an_invoice()
    corrected = DUE + 7 * DAY
    rewritten = DUE + 8 * DAY
    events = [account_row(), *invoice.events(), dunning_row("retrying", at=DUE + 3 * DAY + HOUR),
              invoice_paid(invoice, at=DUE + 6 * DAY),
              dunning_row("none", at=corrected),  # the projector's own write, observed
              dunning_row("retrying", at=rewritten)]  # A3's handler again
    past = (PastCorrection(DUNNING, "update", {"account_id": ACCOUNT}, "stage", "none", at=corrected + HOUR / 2),)
    drift = drift_of(events, past=past)
    assert (drift.cause, drift.since, drift.rewrites) == ("overwrote_correction", rewritten, 1)


def test_since_is_never_after_t_and_the_owner_follows_the_ownership_map():
    events = [account_row(), *an_invoice().events(), dunning_row("final_notice", at=DUE + DAY)]
    owners = owners_from({"billing_prod.dunning.stage": "Dunning team"})
    drift = drift_of(events, owners=owners)
    assert drift.owner == "Dunning team" and drift.since <= T0


def test_subs_customer_rows_are_owned_by_their_source():
    assert Owners().owner("subs.subs_customer", "stripe_customer_id", {"source": "checkout"}) == "A2"
    assert Owners().owner("subs.subs_customer", None, {"source": "setup"}) == "A1"
    assert Owners().owner("subs.subs_customer", None, None) == "A1"  # a row to insert: setup's
    assert Owners().owner("subs.subs_account", "bad_debt") == "A3"
    assert Owners().owner("subs.subs_account", "billing_email") == "A1"
    assert owners_from({"subs.subs_customer": "Identity"}).owner("subs.subs_customer", None, {"source": "x"}) == \
        "Identity"


@pytest.mark.parametrize(("raw", "message"), [
    ({"subs.subs_dunnings": "A3"}, "'subs.subs_dunnings': unknown table 'subs.subs_dunnings'"),
    ({"subs.subs_dunning.stag": "A3"}, "'subs.subs_dunning.stag': unknown column 'stag' of subs.subs_dunning"),
    ({"cf_prod.accounts": " "}, "'cf_prod.accounts': the owner must be a non-empty name"),
    ({"billing_prod.charges": "A3"}, "'billing_prod.charges': unknown table 'billing_prod.charges'"),
])
def test_an_ownership_override_naming_no_compared_table_or_column_or_no_owner_is_refused(raw, message):
    with pytest.raises(OwnersError, match="^conf.toml \\[owners\\] " + message.replace("[", "\\[").replace(".", "\\.")):
        owners_from(raw, "conf.toml [owners]")


def rewrites_by_the_whole_stream(target, folded, past, at) -> int:
    """The count as it was first written: the whole stream scanned again for each past correction."""
    from domain.facts import row_key
    table, op, key, column = target
    count = 0
    for p in past:
        if p.target != target or p.at > at:
            continue
        for e in folded:
            if e.source_time <= p.at or f"{e.store}.{e.table}" != table or (key is not None and row_key(e.key) != key):
                continue
            if op == "update" and e.row is not None and e.row.get(column or "") != p.to:
                count += 1
                break
    return count


@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["none", "retrying", "grace"]), st.booleans()),
                max_size=30),
       st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["none", "retrying"])), max_size=12))
@settings(max_examples=200, deadline=None)
def test_rewrites_count_what_a_scan_of_the_whole_stream_for_each_correction_counts(writes, corrections):
    from domain.drift import _Looked, _rewrites
    from domain.facts import row_key
    start = T0 - 50 * HOUR
    events = [dunning_row(stage, at=start + hours * HOUR) if ours else
              legacy("billing_prod", "invoices", {"invoice_id": "inv_x"}, {"invoice_id": "inv_x"},
                     at=start + hours * HOUR) for hours, stage, ours in writes]
    folded = sorted(events, key=lambda e: (e.source_time, e.originator_version))
    past = [PastCorrection(DUNNING, "update", {"account_id": ACCOUNT}, "stage", stage, at=start + hours * HOUR)
            for hours, stage in corrections]
    target = (DUNNING, "update", row_key({"account_id": ACCOUNT}), "stage")
    assert _rewrites(target, _Looked(folded, past), T0) == rewrites_by_the_whole_stream(target, folded, past, T0)

