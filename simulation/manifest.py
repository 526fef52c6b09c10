"""What a built fleet promises: which accounts drift and the exact corrections that fix them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict


class FleetManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    now: AwareDatetime
    accounts: int
    seed: int
    drifting_accounts: list[str]  # sorted
    expected_corrections: list[dict[str, Any]]  # `spec/cli.md` correction shape
    drift_kinds: dict[str, list[str]] = {}  # account_id -> the drift kinds injected into it
    counts: dict[str, int] = {}  # rows per "store.table", and "stripe.events" etc.

    def save(self, path: Path) -> None:
        Path(path).write_bytes(orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2))

    @classmethod
    def load(cls, path: Path) -> FleetManifest:
        return cls.model_validate(orjson.loads(Path(path).read_bytes()))
