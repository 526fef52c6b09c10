"""The `recompute` command (shared/spec/cli.md): the group (group.py), and one module per command,
each of which attaches its command to the group when the group imports it (group.COMMANDS)."""

from recompute.cli.group import main

__all__ = ["main"]
