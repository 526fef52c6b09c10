"""The `recompute` command (shared/spec/cli.md): the group, and one module per command, each of which
attaches its command to the group when imported here."""

from recompute.cli import (
    apply,  # noqa: F401
    backfill,  # noqa: F401
    cdc,  # noqa: F401
    demo,  # noqa: F401
    embedded,  # noqa: F401
    explain,  # noqa: F401
    grants,  # noqa: F401
    ingest,  # noqa: F401
    plan,  # noqa: F401
    project,  # noqa: F401
    relay,  # noqa: F401
    report,  # noqa: F401
    serve,  # noqa: F401
    status,  # noqa: F401
)
from recompute.cli.group import main

__all__ = ["main"]
