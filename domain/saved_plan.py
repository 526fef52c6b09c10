"""A saved plan (cli.md "Saved plans"): the document `plan --out` writes and `apply --plan` reads. Pure.

    saved_document(plan_json, created_at, log_position) -> dict   the file's content, with its digest
    plan_digest(document) -> str                                   SHA-256 of everything but the digest
    read_document(document, where) -> SavedPlan                    checked: SavedPlanError, one line

The digest is over the document's canonical JSON (keys sorted, no spaces) without `plan_digest`, so
re-indenting the file keeps it and changing any value, key or correction breaks it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from domain.diff import Correction

DIGEST = "plan_digest"
_CORRECTION_FIELDS = ("account_id", "table", "op", "key", "column", "from", "to")
_OPTIONAL_FIELDS = ("drift",)  # where the drift came from, kept for the audit; a plan made without it reads too


class SavedPlanError(ValueError):
    """The file is not a saved plan that can be applied; the message is one line."""


@dataclass(frozen=True)
class SavedPlan:
    digest: str
    as_of: datetime
    rules_version: str
    rules_digest: str
    accounts_checked: int
    log_position: int
    corrections: tuple[Correction, ...]
    account: str | None = None  # `plan --account ID --out`: the plan of one account (no share guard, as apply's)

    @property
    def accounts(self) -> list[str]:
        return sorted({c.account_id for c in self.corrections})


def plan_digest(document: dict[str, Any]) -> str:
    rest = {key: value for key, value in document.items() if key != DIGEST}
    return hashlib.sha256(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)).hexdigest()


def saved_document(plan_json: dict[str, Any], created_at: datetime, log_position: int,
                   account: str | None = None) -> dict[str, Any]:
    """`plan --json`'s object plus when it was made and the log position it was computed at (and the one
    account it was made for, if so), then its digest."""
    document = {**plan_json, "created_at": created_at.isoformat(), "log_position": log_position,
                **({"account": account} if account else {})}
    return {**document, DIGEST: plan_digest(document)}


def read_document(document: Any, where: str) -> SavedPlan:
    """The saved plan in `document` (the parsed file), or SavedPlanError saying what is wrong with `where`."""
    if not isinstance(document, dict) or not isinstance(document.get(DIGEST), str):
        raise SavedPlanError(f"{where}: not a saved plan (no {DIGEST}; make one with `recompute plan --out`)")
    if plan_digest(document) != document[DIGEST]:
        raise SavedPlanError(f"{where}: its content does not match its {DIGEST} (edited since `plan --out` "
                             "wrote it?); refusing to apply it")
    try:
        corrections = tuple(Correction.model_validate({k: c[k] for k in _CORRECTION_FIELDS}
                                                      | {k: c[k] for k in _OPTIONAL_FIELDS if c.get(k)})
                            for c in document["corrections"])
        return SavedPlan(digest=document[DIGEST], as_of=datetime.fromisoformat(document["as_of"]),
                         rules_version=str(document["rules_version"]), rules_digest=str(document["rules_digest"]),
                         accounts_checked=int(document["accounts_checked"]),
                         log_position=int(document["log_position"]), corrections=corrections,
                         account=str(document["account"]) if document.get("account") else None)
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        what = f"no {error}" if isinstance(error, KeyError) else " ".join(str(error).split())
        raise SavedPlanError(f"{where}: not a saved plan recompute can read ({what})") from None


def correction_key(c: Correction) -> bytes:
    """One correction's identity: what it writes where, from what (the audit's rows are matched by it)."""
    return orjson.dumps(c.as_json(), option=orjson.OPT_SORT_KEYS)
