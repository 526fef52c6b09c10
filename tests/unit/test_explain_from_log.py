"""`explain` reads the account through the `EventLog` protocol: here from the in-memory log, no database."""

from __future__ import annotations

from freezegun import freeze_time

from domain.events import CATALOG_STREAM
from domain.rules import RULES_V1
from eventlog.in_memory import InMemoryEventLog
from projections.explain import explanation, read_streams
from tests.support.builders import ACCOUNT, CATALOG_PLANS, T0, an_account, legacy, past_due


def catalog_events():
    return [legacy("cf_prod", "product_config", {"plan": p, "feature": f}, {"plan": p, "feature": f}, at=T0,
                   account=CATALOG_STREAM) for p, features in CATALOG_PLANS.items() for f in features]


@freeze_time(T0)
def test_an_account_is_explained_from_the_in_memory_log():
    given, catalog_given = an_account(invoice=past_due(days=16, attempts=4, stripe_status="open")), catalog_events()
    log = InMemoryEventLog(catalog_given)
    log.append(given[:2])
    log.append(given[2:])
    events, catalog = read_streams(log, ACCOUNT)
    assert [e.originator_version for e in events] == list(range(1, len(given) + 1))
    assert len(catalog) == len(catalog_given)

    explained = explanation(ACCOUNT, events, catalog, RULES_V1, T0)
    assert explained.state.stage == "final_notice" and explained.state.failed_attempts == 4
    assert explained.state.entitlements == {"api": True, "docs": True, "sso": True}
    assert sorted(entry["version"] for entry in explained.timeline) == [e.originator_version for e in events]
    assert explained.state == explanation(ACCOUNT, given, catalog_given, RULES_V1, T0).state  # the log changes nothing
    assert read_streams(log, "acc_nobody")[0] == []
