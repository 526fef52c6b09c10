"""Rules identity: a version names one meaning, for good. Pure.

    Rules.digest                   what the rules mean: the first 16 hex digits of the sha256 of
                                   Rules.canonical_json() (domain/rules.py); the version is not in it
    KnownRules                     a version whose meaning is fixed: built in, or first used by an apply run
    BUILT_IN                       rules v1
    check_identity(rules, known)   raises RulesConflict when rules.version is known with another digest

Which versions earlier runs used is the event store's (eventlog/own_tables.py, known_rules).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from domain.rules import RULES_V1, Rules, RulesError


@dataclass(frozen=True)
class KnownRules:
    version: str
    digest: str
    run_id: str | None = None  # the apply run that first used them; None: built in
    first_used_at: datetime | None = None

    @property
    def where(self) -> str:
        if self.run_id is None:
            return "built in"
        return f"first used by apply run {self.run_id} at {self.first_used_at.isoformat() if self.first_used_at else '?'}"


BUILT_IN = (KnownRules(RULES_V1.version, RULES_V1.digest),)


class RulesConflict(RulesError):
    """Rules that claim a version already known with another meaning."""

    def __init__(self, rules: Rules, known: KnownRules) -> None:
        self.rules, self.known = rules, known
        super().__init__(self.said_of("these rules"))

    def said_of(self, these: str) -> str:
        return (f"version '{self.rules.version}' is already known with digest {self.known.digest} "
                f"({self.known.where}); {these} differ (digest {self.rules.digest}): give them a new version")


def check_identity(rules: Rules, known: Iterable[KnownRules]) -> None:
    for entry in (*BUILT_IN, *known):
        if entry.version == rules.version and entry.digest != rules.digest:
            raise RulesConflict(rules, entry)
