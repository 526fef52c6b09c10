"""The generation followers write into: the active one (read_model_generation), or, when none is
active yet, one of the rules `project` was given, made active and left for the followers to fill.

    active_or_new(conn, rules, as_of) -> (ActiveGeneration, created)

A generation of other rules than those given is refused (RulesDiffer): rules change through `backfill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from domain.partitions import PARTITIONS
from domain.rules import Rules


class RulesDiffer(Exception):
    """The active projection is of other rules than the ones given."""


@dataclass(frozen=True)
class ActiveGeneration:
    id: int
    rules_version: str
    rules_digest: str
    partitions: int


def rules_toml(rules: Rules) -> str:
    """Pure: the rules as the TOML of rules-v1 §4 (what a generation keeps as its rules text)."""
    lines = [f'version = "{rules.version}"', f"bad_debt_days_overdue = {rules.bad_debt_days_overdue}"]
    for stage in rules.stages:
        lines += ["", "[[dunning.stage]]", f'name = "{stage.name}"']
        if stage.days_overdue_at_least is not None:
            lines.append(f"days_overdue_at_least = {stage.days_overdue_at_least}")
        if stage.failed_attempts_at_least is not None:
            lines.append(f"failed_attempts_at_least = {stage.failed_attempts_at_least}")
    return "\n".join(lines) + "\n"


def active_or_new(conn: psycopg.Connection, rules: Rules, as_of: datetime) -> tuple[ActiveGeneration, bool]:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('recompute.follow.generation'))")
        row = conn.execute("SELECT id, rules_version, rules_digest, partitions FROM read_model_generation "
                           "WHERE active").fetchone()
        created = row is None
        if created:
            row = conn.execute(
                "INSERT INTO read_model_generation (rules_version, rules_digest, rules_text, as_of, partitions, "
                "active, activated_at) VALUES (%s, %s, %s, %s, %s, true, now()) "
                "RETURNING id, rules_version, rules_digest, partitions",
                (rules.version, rules.digest, rules_toml(rules), as_of, PARTITIONS)).fetchone()
    generation = ActiveGeneration(*row)
    if generation.rules_digest != rules.digest:
        raise RulesDiffer(f"the active projection (generation {generation.id}) is of rules {generation.rules_version} "
                          f"(digest {generation.rules_digest}), not {rules.version} (digest {rules.digest}); "
                          "change the rules with `recompute backfill --rules FILE --apply`")
    return generation, created
