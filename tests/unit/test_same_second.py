"""Same-second Stripe events of one object (rules-v1 §1, issue 18 defect 5): whatever order webhooks
and the Events API deliver them in, twice or once, the fold ends with the state Stripe holds."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import StripeObjectObserved
from domain.fold import fold
from ingestion.stripe.translate import Observation, translate_event
from tests.support.stripe_world import NOW, an_event

S = NOW - 3_600  # the one second every event of a sequence has as `created`
AS_OF = datetime.fromtimestamp(NOW, UTC)
INVOICE_NEXT = {"draft": ["open", "void"], "open": ["paid", "void", "uncollectible"], "uncollectible": ["paid", "void"]}
SUBSCRIPTION_NEXT = {"incomplete": ["active", "trialing", "incomplete_expired"], "trialing": ["active", "past_due"],
                     "active": ["past_due", "canceled"], "past_due": ["unpaid", "canceled", "paused"],
                     "unpaid": ["canceled"], "paused": ["canceled"]}


def observed(envelope: dict, version: int, via: str) -> StripeObjectObserved:
    """What ingestion records of one delivery (ingestion/stripe/ingester.py)."""
    o = translate_event(envelope)
    assert isinstance(o, Observation)
    return StripeObjectObserved(
        originator_id="acc_000042", originator_version=version, table=o.object_type, key={"id": o.object["id"]},
        position=str(o.event_id), source_time=o.source_time, recorded_at=AS_OF, object=o.object,
        deleted=o.deleted, event_id=o.event_id, event_type=o.event_type, event_created=o.event_created,
        previous_attributes=o.previous_attributes, via=via)


class Story:
    """One object changed several times in one second, as Stripe reports it: each event carries the
    object as it then was, a *.updated event its previous_attributes."""

    def __init__(self, kind: str, obj: dict, draw) -> None:
        self.kind, self.obj, self.draw, self.events, self.fresh = kind, obj, draw, [], 0
        if draw(st.booleans()):  # created in this second too
            self._event(f"{kind}.created", None)

    def _event(self, event_type: str, before: dict | None) -> None:
        envelope = an_event(f"evt_{len(self.events):03d}", event_type, copy.deepcopy(self.obj), S)
        if before is not None:
            envelope["data"]["previous_attributes"] = before
        self.events.append(envelope)

    def change(self, event_type: str, **values) -> None:
        before = {key: copy.deepcopy(self.obj.get(key)) for key in values}
        self.obj.update(values)
        specific = event_type != f"{self.kind}.updated"
        self._event(event_type, None if specific else before)  # Stripe sends previous_attributes with updated

    def new(self, prefix: str) -> str:
        self.fresh += 1
        return f"{prefix}{self.fresh}"


@st.composite
def customer_story(draw) -> Story:
    story = Story("customer", {"id": "cus_42", "object": "customer", "created": S, "metadata": {},
                               "email": "a@b.c"}, draw)
    for step in draw(st.lists(st.sampled_from(["account", "email"]), min_size=1, max_size=5)):
        if step == "account":
            story.change("customer.updated", metadata={**story.obj["metadata"], "account_id": story.new("acc_")})
        else:
            story.change("customer.updated", email=story.new("mail"))
    if draw(st.booleans()):
        story.obj = {"id": "cus_42", "object": "customer", "deleted": True}
        story._event("customer.deleted", None)
    return story


@st.composite
def subscription_story(draw) -> Story:
    story = Story("customer.subscription", {"id": "sub_42", "object": "subscription", "customer": "cus_42",
                                            "created": S, "status": "incomplete", "current_period_end": S + 86_400},
                  draw)
    for _ in range(draw(st.integers(1, 5))):
        moves = SUBSCRIPTION_NEXT.get(story.obj["status"], [])
        if moves and draw(st.booleans()):
            status = draw(st.sampled_from(moves))
            story.change("customer.subscription.deleted" if status == "canceled" and draw(st.booleans())
                         else "customer.subscription.updated", status=status)
            if story.events[-1]["type"].endswith(".deleted"):
                break
        else:
            story.fresh += 1  # a period end it never had
            story.change("customer.subscription.updated", current_period_end=S + 86_400 * (1 + story.fresh))
    return story


@st.composite
def invoice_story(draw) -> Story:
    story = Story("invoice", {"id": "in_42", "object": "invoice", "customer": "cus_42", "created": S,
                              "status": "draft", "amount_due": 5000, "amount_paid": 0, "attempt_count": 0}, draw)
    for _ in range(draw(st.integers(1, 5))):
        moves = INVOICE_NEXT.get(story.obj["status"], [])
        step = draw(st.sampled_from(["status", "attempt", "paid_part"] if moves else ["attempt"]))
        specific = draw(st.booleans())
        if step == "status":
            status = draw(st.sampled_from(moves))
            paid = {"amount_paid": 5000} if status == "paid" else {}
            story.change({"open": "invoice.finalized", "paid": "invoice.paid", "void": "invoice.voided",
                          "uncollectible": "invoice.marked_uncollectible"}[status] if specific else "invoice.updated",
                         status=status, **paid)
        elif step == "attempt":
            story.change("invoice.payment_failed" if specific else "invoice.updated",
                         attempt_count=story.obj["attempt_count"] + 1)
        elif story.obj["amount_paid"] < 4000:
            story.change("invoice.updated", amount_paid=story.obj["amount_paid"] + 1000)
    return story


@st.composite
def deliveries(draw, story) -> list[StripeObjectObserved]:
    """Every event at least once, by webhook or the Events API, some twice, in any order."""
    sent = [(e, draw(st.sampled_from(["webhook", "events_api"]))) for e in story.events]
    sent += [(e, draw(st.sampled_from(["webhook", "events_api"]))) for e in draw(st.lists(st.sampled_from(
        story.events), max_size=3))]
    order = draw(st.permutations(sent))
    return [observed(e, version, via) for version, (e, via) in enumerate(order, 1)]


def the_story_and_its_deliveries(kind):
    return kind.flatmap(lambda story: deliveries(story).map(lambda d: (story, d)))


@settings(max_examples=300, deadline=None)
@given(the_story_and_its_deliveries(customer_story()))
def test_a_customer_changed_in_one_second_ends_as_stripe_holds_it(case):
    story, delivered = case
    facts = fold(delivered, as_of=AS_OF)
    customer = facts.stripe_customers["cus_42"]
    final = story.obj
    assert customer.deleted == bool(final.get("deleted"))
    if not final.get("deleted"):
        assert customer.account_id == final["metadata"].get("account_id")


@settings(max_examples=300, deadline=None)
@given(the_story_and_its_deliveries(subscription_story()))
def test_a_subscription_changed_in_one_second_ends_as_stripe_holds_it(case):
    story, delivered = case
    subscription = fold(delivered, as_of=AS_OF).subscriptions["sub_42"]
    assert subscription.status == story.obj["status"]
    assert subscription.current_period_end == datetime.fromtimestamp(story.obj["current_period_end"], UTC)


@settings(max_examples=300, deadline=None)
@given(the_story_and_its_deliveries(invoice_story()))
def test_an_invoice_changed_in_one_second_ends_as_stripe_holds_it(case):
    story, delivered = case
    invoice = fold(delivered, as_of=AS_OF).stripe_invoices["in_42"]
    assert (invoice.status, invoice.amount_paid, invoice.attempt_count) == (
        story.obj["status"], story.obj["amount_paid"], story.obj["attempt_count"])


def test_a_customer_created_then_given_its_account_in_the_same_second_keeps_it_whichever_comes_first():
    """Defect 5 as found: checkout creates the customer, then sets metadata.account_id at once."""
    created = an_event("evt_a", "customer.created", {"id": "cus_42", "object": "customer", "created": S,
                                                     "metadata": {}}, S)
    updated = an_event("evt_b", "customer.updated", {"id": "cus_42", "object": "customer", "created": S,
                                                     "metadata": {"account_id": "acc_000042"}}, S)
    updated["data"]["previous_attributes"] = {"metadata": {"account_id": None}}
    for order in ([created, updated], [updated, created]):
        facts = fold([observed(e, v, "webhook") for v, e in enumerate(order, 1)], as_of=AS_OF)
        assert facts.stripe_customer is not None and facts.stripe_customer.customer_id == "cus_42"
