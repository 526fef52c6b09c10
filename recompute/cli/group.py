"""The `recompute` command (shared/spec/cli.md). Exit codes: 0 done, 1 the run failed, 2 bad usage or configuration. The group; the commands are in the modules beside it."""

from __future__ import annotations

import importlib
import sys

import click

from recompute.settings import SettingsError

# Each command (or group of them) and the module beside this one that defines it, imported when the
# command is asked for (or `--help` lists them all): a command loads only what it uses, and a Dask
# worker, which imports the main module again (multiprocessing's spawn), none of them. Measured:
# importing every command module took 0.5-0.9 s in each process.
COMMANDS = {
    "apply": "apply", "backfill": "backfill", "cdc": "cdc", "check": "grants", "demo": "demo",
    "embedded": "embedded", "explain": "explain", "grants": "grants", "ingest": "ingest", "plan": "plan",
    "project": "project", "relay": "relay", "report": "report", "serve": "serve", "status": "status",
}


class _Recompute(click.Group):
    """Usage errors are one line, naming the option or argument (cli.md: exit 2), and so is a setting
    that is missing or unusable wherever a command reads the settings; the rest is click's. The
    commands are imported when asked for (COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"recompute.cli.{COMMANDS[cmd_name]}")
        return self.commands.get(cmd_name)

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            sys.exit(2)
        except click.UsageError as error:
            where = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
            click.echo(f"recompute: {' '.join(error.format_message().split())}{where}", err=True)
            sys.exit(2)
        except SettingsError as error:
            click.echo(f"recompute: {error}", err=True)
            sys.exit(2)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("recompute: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

@click.group(cls=_Recompute)
@click.version_option(package_name="recompute", prog_name="recompute", message="%(prog)s %(version)s")
def main() -> None:
    """Event-sourced projector of billing and dunning state."""
    from recompute.logs import configure
    from recompute.settings import SettingsError, read_settings

    try:
        configure(read_settings().log_format)
    except SettingsError as error:
        if error.variable == "RECOMPUTE_LOG_FORMAT":
            click.echo(f"recompute: {error}", err=True)
            sys.exit(2)
        configure()  # the command reads the settings again and says what is wrong (exit 2)
