"""The group imports a command's module only when the command is asked for (recompute/cli/group.py):
its list of commands must name exactly what the modules attach, each to the module that does."""

from __future__ import annotations

import importlib
import pkgutil

import recompute.cli
from recompute.cli.group import COMMANDS, main


def test_the_group_names_every_command_the_modules_attach_and_each_one_where_it_is():
    for module in pkgutil.iter_modules(recompute.cli.__path__):
        importlib.import_module(f"recompute.cli.{module.name}")
    assert sorted(main.commands) == sorted(COMMANDS)
    for name, module in COMMANDS.items():
        assert main.commands[name].callback.__module__ == f"recompute.cli.{module}", name
