"""Rules as data (rules-v1 §4): the dunning stages and the bad-debt threshold.

    RULES_V1                      the built-in default, exactly rules-v1 §4
    parse_rules(text, source=)    TOML text -> Rules, or RulesError saying what and where
    rules.to_toml()               Rules -> TOML text that parse_rules reads back as the same Rules
    load_rules(path)              the same, read from a file (the only I/O in domain/)

A stage applies when any of its conditions holds; one without conditions always applies, so it
must be the last (stages after it could never apply) and there must be one (a past-due account
always has a stage: `none` is only for "nothing past due"). A stage that the stages above it
shadow, so that it can never be the first to apply, is refused (domain/rules_reach.py).

What rules mean is `Rules.canonical_json()` and its `digest` (domain/rules_identity.py).
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from domain.rules_reach import first_unreachable, shadowed

StageName = Literal["suspended", "final_notice", "retrying", "grace"]
STAGE_NAMES: tuple[str, ...] = ("suspended", "final_notice", "retrying", "grace")
_TOP_KEYS = ("version", "bad_debt_days_overdue", "dunning")
_STAGE_KEYS = ("name", "days_overdue_at_least", "failed_attempts_at_least")
DIGEST_HEX_DIGITS = 16


MAX_DAYS = 36_500  # a days threshold past 100 years would push due date + threshold out of datetime's range
Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]


class RulesError(ValueError):
    """A rules file that cannot be used; the message says what and where."""


Fail = Callable[[str, str], "RulesError"]  # (where, what) -> the error to raise


class Stage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StageName
    days_overdue_at_least: Days | None = None
    failed_attempts_at_least: NonNegativeInt | None = None

    @property
    def unconditional(self) -> bool:
        return self.days_overdue_at_least is None and self.failed_attempts_at_least is None


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    bad_debt_days_overdue: Days
    stages: tuple[Stage, ...]

    @model_validator(mode="after")
    def _well_formed(self) -> Rules:
        """The same structure parse_rules checks, for rules built in code."""
        names = [s.name for s in self.stages]
        if not self.stages or not self.stages[-1].unconditional:
            raise ValueError("the last stage must have no condition")
        if any(s.unconditional for s in self.stages[:-1]) or len(set(names)) != len(names):
            raise ValueError("stages must be distinct, and only the last may have no condition")
        if unreachable := first_unreachable(self.stages):
            number, why = unreachable
            raise ValueError(f"stage #{number} '{self.stages[number - 1].name}': unreachable: {why}")
        return self

    def canonical_json(self) -> str:
        """What the rules mean, as JSON: the bad-debt threshold and the stages in order, every key
        present (null: no such condition), keys sorted, no whitespace. Not the version: that is the
        name given to a meaning."""
        return orjson.dumps(self.model_dump(mode="json", exclude={"version"}), option=orjson.OPT_SORT_KEYS).decode()

    @property
    def digest(self) -> str:
        """The first 16 hex digits of the sha256 of canonical_json()."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:DIGEST_HEX_DIGITS]

    def to_toml(self) -> str:
        """The rules as the TOML of rules-v1 §4 (what a generation keeps as its rules text):
        `parse_rules(rules.to_toml()) == rules`."""
        lines = [f"version = {_toml_string(self.version)}", f"bad_debt_days_overdue = {self.bad_debt_days_overdue}"]
        for stage in self.stages:
            lines += ["", "[[dunning.stage]]", f'name = "{stage.name}"']
            if stage.days_overdue_at_least is not None:
                lines.append(f"days_overdue_at_least = {stage.days_overdue_at_least}")
            if stage.failed_attempts_at_least is not None:
                lines.append(f"failed_attempts_at_least = {stage.failed_attempts_at_least}")
        return "\n".join(lines) + "\n"

    @cached_property
    def day_thresholds(self) -> tuple[int, ...]:
        """Every days_overdue threshold in the rules (stages and bad debt), ascending (made once:
        the drift walk asks it at every instant)."""
        days = {s.days_overdue_at_least for s in self.stages if s.days_overdue_at_least is not None}
        return tuple(sorted(days | {self.bad_debt_days_overdue}))


RULES_V1 = Rules(
    version="v1",
    bad_debt_days_overdue=60,
    stages=(
        Stage(name="suspended", days_overdue_at_least=21),
        Stage(name="final_notice", days_overdue_at_least=14, failed_attempts_at_least=4),
        Stage(name="retrying", days_overdue_at_least=3, failed_attempts_at_least=1),
        Stage(name="grace"),
    ),
)


def load_rules(path: str | Path) -> Rules:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"rules file {path}: cannot read it: {exc}") from exc
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "<rules>") -> Rules:
    def fail(where: str, what: str) -> RulesError:
        return RulesError(f"rules file {source}: {where}{': ' if where else ''}{what}")

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail("", f"not valid TOML: {exc}") from exc
    _no_unknown_keys(data, _TOP_KEYS, "", fail)
    if "version" not in data:
        raise fail("", "missing key 'version' (e.g. version = \"v1\")")
    version = data["version"]
    if not isinstance(version, str) or not version.strip():
        raise fail("version", f"must be a non-empty string such as \"v1\", got {_show(version)}")
    if "bad_debt_days_overdue" not in data:
        raise fail("", "missing key 'bad_debt_days_overdue' (e.g. bad_debt_days_overdue = 60)")
    bad_debt = _days(data["bad_debt_days_overdue"], "bad_debt_days_overdue", fail)
    dunning = data.get("dunning", {})
    if not isinstance(dunning, dict):
        raise fail("dunning", f"must be a table holding [[dunning.stage]] entries, got {_show(dunning)}")
    _no_unknown_keys(dunning, ("stage",), "[dunning]", fail)
    raw_stages = dunning.get("stage", [])
    if not isinstance(raw_stages, list) or not all(isinstance(s, dict) for s in raw_stages):
        raise fail("dunning.stage", "must be an array of tables written [[dunning.stage]]")
    if not raw_stages:
        raise fail("[[dunning.stage]]", "no stages: at least one is needed, the last without conditions")
    return Rules(version=version, bad_debt_days_overdue=bad_debt, stages=_stages(raw_stages, fail))


def _stages(raw_stages: list[dict[str, Any]], fail: Fail) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(raw_stages, start=1):
        name = raw.get("name")
        where = f"[[dunning.stage]] #{number}" + (f" '{name}'" if isinstance(name, str) else "")
        _no_unknown_keys(raw, _STAGE_KEYS, where, fail)
        if name is None:
            raise fail(where, f"missing key 'name' (one of {', '.join(STAGE_NAMES)})")
        if name not in STAGE_NAMES:
            hint = " ('none' is implied when nothing is past due)" if name == "none" else _did_you_mean(
                str(name), STAGE_NAMES, fallback=f" (one of {', '.join(STAGE_NAMES)})")
            raise fail(where, f"unknown stage name {_show(name)}{hint}")
        if name in seen:
            raise fail(where, f"duplicate stage: '{name}' is already stage #{seen[name]}")
        seen[name] = number
        days = raw.get("days_overdue_at_least")
        attempts = raw.get("failed_attempts_at_least")
        stage = Stage(
            name=name,
            days_overdue_at_least=None if days is None else _days(days, f"{where}: days_overdue_at_least", fail),
            failed_attempts_at_least=None if attempts is None else _count(
                attempts, f"{where}: failed_attempts_at_least", fail),
        )
        if stages and stages[-1].unconditional:
            last = stages[-1]
            raise fail(where, f"unreachable: stage #{number - 1} '{last.name}' has no condition and "
                              "always applies, so no stage after it can apply")
        if why := shadowed(stages, stage):
            raise fail(where, f"unreachable: {why}")
        stages.append(stage)
    if not stages[-1].unconditional:
        raise fail(f"[[dunning.stage]] #{len(stages)} '{stages[-1].name}'",
                   "the last stage must have no condition, so that a past-due account always has a stage")
    return tuple(stages)


def _days(value: Any, where: str, fail: Fail) -> int:
    """A days threshold: a count that a due date plus it is still a date (T runs to year 9000)."""
    days = _count(value, where, fail)
    if days > MAX_DAYS:
        raise fail(where, f"must be at most {MAX_DAYS} days (100 years), got {days}")
    return days


def _count(value: Any, where: str, fail: Fail) -> int:
    if isinstance(value, bool):
        raise fail(where, f"must be a whole number, not the boolean {_show(value)}")
    if not isinstance(value, int):
        raise fail(where, f"must be a whole number, got {_show(value)}")
    if value < 0:
        raise fail(where, f"must be 0 or more, got {value}")
    return value


def _no_unknown_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str, fail: Fail) -> None:
    for key in table:
        if key not in allowed:
            what = "unknown key" if where else "unknown top-level key"
            raise fail(where, f"{what} '{key}'{_did_you_mean(key, allowed)}")


def _did_you_mean(word: str, choices: tuple[str, ...], fallback: str = "") -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else fallback


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    return '"' + "".join(escaped.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                         for c in text) + '"'


def _show(value: Any) -> str:
    """A value as the TOML author wrote it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)
