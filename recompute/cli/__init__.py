"""The `recompute` command (shared/spec/cli.md): the group, and one module per command, each of which
attaches its command to the group when imported here."""

from recompute.cli.group import main
from recompute.cli import apply  # noqa: F401
from recompute.cli import backfill  # noqa: F401
from recompute.cli import cdc  # noqa: F401
from recompute.cli import demo  # noqa: F401
from recompute.cli import embedded  # noqa: F401
from recompute.cli import explain  # noqa: F401
from recompute.cli import grants  # noqa: F401
from recompute.cli import ingest  # noqa: F401
from recompute.cli import plan  # noqa: F401
from recompute.cli import project  # noqa: F401
from recompute.cli import relay  # noqa: F401
from recompute.cli import report  # noqa: F401
from recompute.cli import serve  # noqa: F401
from recompute.cli import status  # noqa: F401

__all__ = ["main"]
