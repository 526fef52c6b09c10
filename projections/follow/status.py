"""What `status` says of the continuous projection (a section of projections/status.py).

    follow_status(conn) -> dict | None     None when no follower ever ran
    follow_lines(section) -> [str]         its text
"""

from __future__ import annotations

from typing import Any

from eventlog.stores import Connection
from eventlog.tables_present import has_tables
from projections.follow.breaker import read_breaker
from projections.follow.leases import owners


def follow_status(conn: Connection) -> dict[str, Any] | None:
    if not has_tables(conn, "follow_lease", "follow_breaker", "follow_withheld", "follow_position"):
        return None
    held = owners(conn)
    withheld, position = conn.execute(  # type: ignore[misc]  # always one row
        "SELECT (SELECT count(*) FROM follow_withheld), (SELECT min(position) FROM follow_position p "
        "JOIN read_model_generation g ON g.id = p.generation AND g.active)").fetchone()
    return {"followers": [{"owner": o, "partitions": len(ps)} for o, ps in sorted(held.items())],
            "partitions_unheld": conn.execute("SELECT count(*) FROM follow_lease WHERE owner IS NULL "  # type: ignore[index]  # always one row
                                              "OR expires_at <= now()").fetchone()[0],
            "position": position, "breaker": read_breaker(conn).as_json(), "withheld_accounts": withheld}


def follow_lines(section: dict[str, Any] | None) -> list[str]:
    if section is None:
        return ["followers: none has run (`recompute project`)"]
    followers = section["followers"]
    lines = [f"followers: {len(followers)} live" + (" (" + ", ".join(
        f"{f['owner']}: {f['partitions']} partitions" for f in followers) + ")" if followers else "")
        + f", {section['partitions_unheld']} partitions unheld, log position {section['position']}"]
    breaker = section["breaker"]
    if breaker["open"]:
        lines.append(f"circuit breaker: OPEN since {breaker['tripped_at']}: {breaker['reason']}; "
                     f"{section['withheld_accounts']} accounts withheld; writing waits for `recompute project --resume`")
    else:
        lines.append("circuit breaker: closed")
    return lines
