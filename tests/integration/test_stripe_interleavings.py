"""Property: webhook deliveries and Events API catch-ups, interleaved any way — duplicates,
reordering, several deliveries of one id at once, customers named after their invoices, and one
kill -9 at a random point followed by a rerun of what remains — end with each evt_ id in the log
once and the same true state as one clean, in-order ingest of the same events.

A history is a few customers and invoices and their events in `created` order. Stripe publishes
them in that order (the Events API shows what is published); each published event is delivered
by webhook once or twice, in any order, and an unanswered delivery is delivered again. Runs page
the Events API in batches of 2, so a run is several transactions. The kill is a real SIGKILL: a
forked child does one step and kills itself before its k-th batch commits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ingestion.stripe.ingester as stripe_ingest
from domain.catalog import fold_catalog
from domain.fold import fold
from domain.rules import RULES_V1
from domain.truth import true_state
from eventlog.account_log import open_log
from eventlog.own_tables import count_waiting, ensure_own_schema
from ingestion.stripe.ingester import StripeIngester
from ingestion.stripe.reader import StripeApiReader
from simulation.harness.databases import scratch_databases
from simulation.stripe_standin import StripeStandIn
from simulation.stripe_world import StripeWorld
from tests.support.stores import eventstore_only
from tests.support.stripe_world import API_KEY, NOW, an_event, an_invoice

pytestmark = pytest.mark.integration
AS_OF = datetime.fromtimestamp(NOW, UTC)
OWN_TABLES = "recompute_events, stripe_event_seen, stripe_customer_account, parked_record, ingest_checkpoint"


@st.composite
def histories(draw) -> tuple[list[dict], list[dict]]:
    """(events in created order, the customers Stripe's API holds): 1-3 customers, 1-3 invoices."""
    customers = draw(st.integers(1, 3))
    named = [draw(st.sampled_from(["at creation", "later", "later", "never"])) for _ in range(customers)]
    in_api = [draw(st.booleans()) for _ in range(customers)]
    owner = [draw(st.integers(0, customers - 1)) for _ in range(draw(st.integers(1, 3)))]
    steps = draw(st.lists(st.one_of(st.tuples(st.just("customer"), st.integers(0, customers - 1)),
                                    st.tuples(st.sampled_from(["finalized", "payment_failed", "paid"]),
                                              st.integers(0, len(owner) - 1))), min_size=2, max_size=9))
    events, created_customers, failures = [], set(), [0] * len(owner)
    for n, (kind, i) in enumerate(steps):
        at = NOW - 86_400 + 60 * n
        if kind == "customer":
            names = named[i] == "at creation" or (named[i] == "later" and i in created_customers)
            body = _customer(i, names, created=NOW - 86_400)
            events.append(an_event(f"evt_{n}", "customer.updated" if i in created_customers else "customer.created",
                                   body, at))
            created_customers.add(i)
            continue
        failures[i] += kind == "payment_failed"
        status = "paid" if kind == "paid" else "open"
        invoice = an_invoice(f"in_{i}", f"cus_{owner[i]}", status=status, attempt_count=failures[i],
                             created=NOW - 86_400, **({"paid_at": at} if kind == "paid" else {}))
        events.append(an_event(f"evt_{n}", f"invoice.{kind}", invoice, at))
    api = [_customer(i, named[i] != "never", created=NOW - 86_400) for i in range(customers) if in_api[i]]
    return events, api


def _customer(i: int, names: bool, *, created: int) -> dict:
    return {"id": f"cus_{i}", "object": "customer", "created": created,
            "metadata": {"account_id": f"acc_{i:06d}"} if names else {}}


@pytest.fixture(scope="module")
def logs():
    with scratch_databases("eventstore", "reference") as dsns:
        for dsn in dsns.values():
            ensure_own_schema(dsn)
        yield dsns


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(history=histories(), data=st.data())
def test_any_interleaving_records_each_event_once_and_the_state_of_a_clean_ingest(logs, history, data):
    events, api_customers = history
    for dsn in logs.values():
        with psycopg.connect(dsn) as conn:
            conn.execute(f"TRUNCATE {OWN_TABLES}")
    with StripeStandIn(StripeWorld(now=NOW, customers=api_customers, events=events), api_key=API_KEY) as stripe:
        StripeIngester(reader=_reader(stripe), stores=eventstore_only(logs["reference"])).run()
    with StripeStandIn(StripeWorld(now=NOW, customers=api_customers), api_key=API_KEY) as stripe:
        _interleave(data, events, stripe, logs["eventstore"])
    interleaved, clean = _log(logs["eventstore"]), _log(logs["reference"])
    assert [i for i, n in interleaved.items() if n > 1] == [], "evt_ ids recorded more than once"
    assert interleaved.keys() == clean.keys()
    assert _states(logs["eventstore"]) == _states(logs["reference"])
    assert _waiting(logs["eventstore"]) == _waiting(logs["reference"])
    event(f"{_waited(logs['eventstore'])} objects waited for their customer, {_waiting(logs['eventstore'])} still wait")


def _interleave(data, events: list[dict], stripe: StripeStandIn, dsn: str) -> None:
    ingester = StripeIngester(reader=_reader(stripe), stores=eventstore_only(dsn), batch_size=2)
    published, in_flight = 0, []  # in_flight: deliveries not answered yet
    kill_at = data.draw(st.integers(1, len(events)), label="kill at step")  # every event is delivered: reached
    step = 0  # runs and deliveries
    with psycopg.connect(dsn) as pooled:
        while published < len(events) or in_flight:
            actions = (["publish"] if published < len(events) else []) + (["deliver", "race"] if in_flight else []) \
                + (["run"] if step < 3 * len(events) else [])  # a bounded number of steps
            action = data.draw(st.sampled_from(actions), label="action")
            if action == "publish":
                stripe.add_event(events[published])
                in_flight += [events[published]] * data.draw(st.integers(1, 2), label="deliveries")
                published += 1
                continue
            step += 1
            if action == "run":
                work = ingester.run
                if step != kill_at:
                    work()
            else:
                envelope = in_flight.pop(data.draw(st.integers(0, len(in_flight) - 1), label="which"))
                copies = data.draw(st.integers(2, 4), label="at once") if action == "race" else 1
                work = _racing(ingester, envelope, copies, dsn)
                if step == kill_at:
                    in_flight.append(envelope)  # unanswered: Stripe delivers it again
                elif copies == 1:
                    ingester.record_deliveries([envelope], log=pooled)
                    continue
                else:
                    work()
            if step == kill_at:  # a run commits several batches, a delivery one
                _killed_before_batch(data.draw(st.integers(1, 4 if action == "run" else 1), label="batch"), work)
    ingester.run()  # the rerun of what remains


def _racing(ingester: StripeIngester, envelope: dict, copies: int, dsn: str) -> Callable[[], None]:
    """`copies` deliveries of one envelope at once, each on a connection of its own."""
    def work() -> None:
        start, errors = threading.Barrier(copies), []

        def deliver() -> None:
            with psycopg.connect(dsn) as conn:
                start.wait()
                try:
                    ingester.record_deliveries([dict(envelope)], log=conn)
                except Exception as error:  # noqa: BLE001 - re-raised below
                    errors.append(error)

        threads = [threading.Thread(target=deliver) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    return work


def _killed_before_batch(batch: int, work: Callable[[], None]) -> None:
    """Does `work` in a forked child that SIGKILLs itself just before its `batch`-th batch commits."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's stack
        code = 0
        try:
            calls, append = 0, stripe_ingest.append_events

            def append_then_die(*args, **kwargs):
                nonlocal calls
                calls += 1
                if calls == batch:
                    os.kill(os.getpid(), signal.SIGKILL)
                return append(*args, **kwargs)

            stripe_ingest.append_events = append_then_die
            work()
        except BaseException:  # noqa: BLE001 - the child reports and exits
            traceback.print_exc(file=sys.stderr)
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, "the step failed in the child"
    event("killed mid-step" if os.WIFSIGNALED(status) else "the step ended before the kill point")


def _reader(stripe: StripeStandIn) -> StripeApiReader:
    return StripeApiReader(api_key=API_KEY, api_base=stripe.base_url, max_network_retries=0)


def _log(dsn: str) -> dict[str, int]:
    """evt_ id -> how many events of it the log holds."""
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(
            "SELECT id, count(*) FROM (SELECT convert_from(state, 'UTF8')::jsonb ->> 'event_id' AS id "
            "FROM recompute_events) e WHERE id IS NOT NULL GROUP BY 1").fetchall())


def _states(dsn: str) -> dict[str, dict]:
    """Each account's true state as of NOW, folded from its stream as plan and explain do."""
    with psycopg.connect(dsn) as conn:
        accounts = [a for (a,) in conn.execute("SELECT DISTINCT originator_id FROM recompute_events")]
    log = open_log(dsn)
    try:
        catalog = fold_catalog([], as_of=AS_OF)
        return {account: true_state(fold(log.stream(account), as_of=AS_OF), catalog, RULES_V1, AS_OF,
                                    explain=False).model_dump() for account in accounts}
    finally:
        log.close()


def _waiting(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return count_waiting(conn)


def _waited(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM parked_record WHERE waiting_for IS NOT NULL").fetchone()[0]
