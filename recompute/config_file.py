"""`RECOMPUTE_CONFIG`: a TOML file holding settings under their environment names, and `[owners]`.

```toml
RECOMPUTE_SUBS_DSN = "host=db1 dbname=subs user=recompute"
RECOMPUTE_BROKER_URL = "amqp://recompute@mq//"

[owners]
"subs.subs_dunning" = "A3"
"subs.subs_account.bad_debt" = "collections"
```

Reading it is pure of the environment: `read_config_file` returns the file's settings and owners,
or raises `ConfigFileProblem` naming the key (None: the file as a whole) and what is wrong with it;
`recompute.settings` layers the environment over it and turns a problem into one line, exit 2.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

OWNERS = "owners"


class ConfigFileProblem(Exception):
    def __init__(self, key: str | None, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    settings: dict[str, str]  # environment name -> value, as written
    owners: dict[str, str]  # "store.table" or "store.table.column" -> a name, as written


def read_config_file(path: Path, known: Collection[str]) -> ConfigFile:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigFileProblem(None, "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileProblem(None, f"unreadable: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileProblem(None, f"not TOML: {error}") from None
    settings: dict[str, str] = {}
    owners: dict[str, str] = {}
    for key, value in document.items():
        if key == OWNERS:
            owners = _owners(value)
        elif key not in known:
            raise ConfigFileProblem(key, f"unknown key{_did_you_mean(key, [*known, OWNERS])}")
        elif not isinstance(value, str):
            raise ConfigFileProblem(key, f"must be a string, not {_kind(value)}")
        else:
            settings[key] = value
    return ConfigFile(path=path, settings=settings, owners=owners)


def _owners(table: object) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigFileProblem(OWNERS, f"must be a table ([owners]), not {_kind(table)}")
    owners: dict[str, str] = {}
    for key, name in table.items():
        if isinstance(name, dict):
            raise ConfigFileProblem(f"[owners] {key}",
                                    'a nested table: quote a dotted key, e.g. "subs.subs_dunning" = "A3"')
        if not isinstance(name, str) or not name.strip():
            raise ConfigFileProblem(f"[owners] {key!r}", f"must name an owner (a non-empty string), not {_kind(name)}")
        owners[key] = name
    return owners


def _did_you_mean(key: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"


def _kind(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    kinds = {bool: "a boolean", int: "an integer", float: "a number", list: "an array", dict: "a table"}
    return next((kind for type_, kind in kinds.items() if isinstance(value, type_)), type(value).__name__)
