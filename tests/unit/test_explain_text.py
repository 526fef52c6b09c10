"""`explain` for people (projections/explain_text.py): short refs that match the timeline's, grouped, wrapped."""

from __future__ import annotations

import re

from freezegun import freeze_time

from domain.rules import RULES_V1
from projections.explain import explanation, render_text
from tests.support.builders import ACCOUNT, T0, an_account, now, past_due


@freeze_time(T0)
def test_every_ref_the_state_cites_is_a_short_ref_the_timeline_shows():
    text = render_text(explanation(ACCOUNT, an_account(invoice=past_due(days=16, attempts=4, stripe_status="open")),
                                   [], RULES_V1, now()))
    timeline, _, rest = text.partition("true state")
    shown = set(re.findall(r"^ {4}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  (\S+)", timeline, re.M))
    cited = {ref for refs in re.findall(r"from ([^;]+?)(?:\n\S|\n {2}\S|$)", rest, re.S)
             for ref in re.split(r",\s+|\s+and \d+ more", " ".join(refs.split())) if ref}
    assert cited and cited <= shown, f"cited {cited - shown} not in the timeline {shown}"
    assert "@" not in rest.split("corrections (")[0], "a long ref (store.table[key]@position) in the state's reasons"


@freeze_time(T0)
def test_the_timeline_is_grouped_by_source_and_every_line_fits_120_columns():
    text = render_text(explanation(ACCOUNT, an_account(invoice=past_due(days=16, attempts=4, stripe_status="open")),
                                   [], RULES_V1, now()))
    groups = re.findall(r"^  (cf_prod|billing_prod|subs|stripe) \(\d+\)$", text, re.M)
    assert groups == sorted(set(groups), key=groups.index) and {"cf_prod", "billing_prod"} <= set(groups)
    assert max(len(line) for line in text.splitlines()) <= 120


@freeze_time(T0)
def test_the_stage_line_gives_the_rule_and_the_events_that_decided_it():
    text = render_text(explanation(ACCOUNT, an_account(invoice=past_due(days=16, attempts=4, stripe_status="open")),
                                   [], RULES_V1, now()))
    stage = next(line for line in text.splitlines() if line.startswith("  stage "))
    assert "final_notice" in stage and "rule" in stage
