"""The active rules: those of the active generation (`read_model_generation WHERE active`), and
before any `backfill --apply` the default ones (RECOMPUTE_RULES, else the built-in v1).

    choose(flag, default, active, ...) -> Choice    pure: which rules a command runs under, or why not
(the active generation is read by the root's RulesSource through read_model/generations.active)

How a command chooses (cli.md "Rule changes"), rules compared by digest:
  - the active rules are the active generation's; with none, the default ones (RECOMPUTE_RULES,
    else the built-in v1);
  - without --rules a command runs under the active rules; when a generation is active and
    RECOMPUTE_RULES names other rules, plan and explain run under the active ones with a warning,
    apply and project refuse;
  - --rules other than the active rules: plan and explain run under them, apply and project refuse.
A refusal says to run `recompute backfill --rules FILE --apply`, which is how rules become active.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.rules import Rules
from projections.read_model.generations import Generation


@dataclass(frozen=True)
class Choice:
    rules: Rules | None          # what the command runs under (None: refused)
    warning: str | None = None   # one line for stderr
    refusal: str | None = None   # one line, exit 2


def choose(flag: Rules | None, default: Rules, active: Generation | None, *, default_from_env: bool,
           writes: bool) -> Choice:
    """Pure: the rules a command runs under. `flag`: --rules; `default`: RECOMPUTE_RULES
    (default_from_env) else the built-in v1; `writes`: apply and project, which run only under the
    active rules."""
    active_rules = active.rules if active is not None else default
    where = f"generation {active.id}" if active is not None else \
        "RECOMPUTE_RULES, no backfill applied yet" if default_from_env else "built in, no backfill applied yet"
    if flag is None:
        if active is None or not default_from_env or default.digest == active.rules.digest:
            return Choice(active_rules)
        if writes:
            return Choice(None, refusal=_refusal(default, "RECOMPUTE_RULES: ", _named(active_rules, where)))
        return Choice(active_rules, warning=f"RECOMPUTE_RULES names rules {_named(default)}, not the active ones "
                                            f"{_named(active_rules, where)}: running under the active rules")
    if flag.digest == active_rules.digest or not writes:
        return Choice(flag)  # plan and explain may try other rules
    return Choice(None, refusal=_refusal(flag, "--rules: ", _named(active_rules, where)))


def _named(rules: Rules, where: str = "") -> str:
    return f"{rules.version} (digest {rules.digest}{'; ' + where if where else ''})"


def _refusal(given: Rules, named_by: str, active: str) -> str:
    return (f"{named_by}rules {_named(given)} are not the active rules {active}: "
            "run `recompute backfill --rules FILE --apply` to make them active")
