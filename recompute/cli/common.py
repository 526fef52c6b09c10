"""What several commands share: the run failure, the instant type, reading the rules and the app (exiting 2 on bad configuration), JSON output, the relay step."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

import click
import orjson

from domain.owners import Owners, OwnersError, owners_from
from domain.rules import RULES_V1, Rules, RulesError, load_rules
from domain.rules_identity import RulesConflict
from eventlog.own_tables import check_known_rules
from eventlog.stores import Error
from projections.read_model.active_rules import choose
from projections.read_model.generations import ActiveRulesUnreadable
from recompute.bootstrap import App, wire
from recompute.embedded import EmbeddedPostgresError
from recompute.settings import SettingsError, read_settings

if TYPE_CHECKING:
    from projections.apply.relay import RelayReport


class RunFailed(click.ClickException):
    exit_code = 1

class Instant(click.ParamType):
    """An ISO 8601 instant with offset, e.g. 2026-03-01T00:00:00Z, within EARLIEST..LATEST: the rules add
    and subtract day thresholds to it, and Python's datetime ends at year 9999."""

    name = "instant"
    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(9000, 1, 1, tzinfo=UTC)

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant (e.g. 2026-03-01T00:00:00Z)", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no offset; write e.g. {value}Z or {value}+00:00", param, ctx)
        try:
            instant = parsed.astimezone(UTC)
        except OverflowError:
            instant = None
        if instant is None or not self.EARLIEST <= instant < self.LATEST:
            self.fail(f"{value!r} is outside the instants recompute computes with "
                      f"({self.EARLIEST:%Y-%m-%d} to {self.LATEST:%Y-%m-%d})", param, ctx)
        return instant

def rules_or_exit(path: str | None) -> Rules:
    """--rules FILE, else RECOMPUTE_RULES, else rules v1. Read before anything is wired, so a bad
    file writes nothing; its error says what and where (and which variable named it)."""
    try:
        settings = read_settings()
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    chosen = path or settings.rules_path
    if chosen is None:
        return RULES_V1
    try:
        return load_rules(chosen)
    except RulesError as error:
        named_by = "" if path else "RECOMPUTE_RULES: "
        click.echo(f"recompute: {named_by}{error}", err=True)
        sys.exit(2)

def active_rules_or_exit(app: App, rules: Rules, path: str | None, *, writes: bool) -> Rules:
    """The rules the command runs under (projections/read_model/active_rules.choose): `rules` as
    rules_or_exit read them, checked against the active rules. `writes` (apply, project): only the
    active rules; other rules are refused (exit 2, saying to run backfill). plan and explain run
    under the active rules without --rules (RECOMPUTE_RULES naming others is overruled, warned once)."""
    default_path = read_settings().rules_path
    if path is None:
        default = rules
    elif default_path is None:
        default = RULES_V1
    else:
        default = rules_or_exit(None)
    try:
        active = app.rules.active()
    except ActiveRulesUnreadable as error:
        raise RunFailed(str(error)) from None
    except Error as error:
        raise RunFailed(f"reading the active rules failed: {' '.join(str(error).split())}") from error
    choice = choose(rules if path else None, default, active, default_from_env=default_path is not None,
                    writes=writes)
    if choice.refusal is not None or choice.rules is None:
        click.echo(f"recompute: {choice.refusal}", err=True)
        sys.exit(2)
    if choice.warning:
        click.echo(f"recompute: {choice.warning}", err=True)
    return choice.rules

def _refuse_rules_known_otherwise(app: App, rules: Rules, path: str | None) -> None:
    """Rules whose version is built in, or was used by an earlier `apply`, with another digest are
    refused (exit 2) with both digests. Reads only (`apply` checks again under its lock)."""
    try:
        with app.stores.connect(purpose="rules", read_only=True) as conn:
            check_known_rules(conn, rules)
    except RulesConflict as conflict:
        _refused_rules(conflict, path)
    except Error as error:
        raise RunFailed(f"reading the known rules versions failed: {' '.join(str(error).split())}") from error

def _refused_rules(conflict: RulesConflict, path: str | None) -> NoReturn:
    """One line naming where the rules came from (--rules, RECOMPUTE_RULES or built in) and both digests."""
    chosen = path or read_settings().rules_path
    if chosen is None:
        where, these = f"the built-in rules {conflict.rules.version}", "these rules"
    else:
        where, these = f"{'' if path else 'RECOMPUTE_RULES: '}rules file {chosen}", "this file's rules"
    click.echo(f"recompute: {where}: {conflict.said_of(these)}", err=True)
    sys.exit(2)

def owners_or_exit() -> Owners:
    """The ownership map (domain/owners.py): the defaults with RECOMPUTE_CONFIG's [owners] over them;
    an entry naming no compared table or column, or no owner, is refused in one line, exit 2."""
    try:
        settings = read_settings()
        return owners_from(settings.owners, f"RECOMPUTE_CONFIG: {settings.origins.get('owners', 'default')}: [owners]")
    except (SettingsError, OwnersError) as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)


def rules_line(version: str, digest: str) -> str:
    return f"rules {version} (digest {digest})"

def utc_now() -> datetime:
    return datetime.now(UTC)

def app_or_exit(*, uses_stripe: bool = False, reads_legacy: tuple[str, ...] = (), writes: bool = True) -> App:
    try:
        return wire(read_settings(), uses_stripe=uses_stripe, reads_legacy=reads_legacy, writes=writes)
    except (SettingsError, EmbeddedPostgresError) as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)

def privileges_or_exit(app: App) -> None:
    """`check`'s short form, before a command writes: one query per legacy store; a role that lacks
    a privilege the writes need is named, one line each, exit 2, nothing written (`recompute check`
    also warns of what a role may do beyond them). The embedded default is recompute's own."""
    if app.settings.needs_embedded:
        return
    from recompute.check import privilege_errors  # here: the commands that only read need not import it

    try:
        lacking = privilege_errors(app.stores)
    except Error as error:
        raise RunFailed(f"reading the legacy stores' privileges failed: {' '.join(str(error).split())}") from error
    if lacking:
        click.echo("\n".join(f"recompute: {line}" for line in lacking), err=True)
        sys.exit(2)

def echo_json(document: dict) -> None:
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())

def exit_no_events(account_id: str) -> None:
    click.echo(f"recompute: no events for account {account_id!r} in the log (has it been ingested?)", err=True)
    sys.exit(1)

def warn_if_never_ingested(accounts_checked: int) -> None:
    """plan and apply read the account event log: before any `ingest` it holds nothing to check."""
    if accounts_checked == 0:
        click.echo("recompute: the event log holds no accounts; run `recompute ingest` first", err=True)

def check_broker_url(url: str | None) -> str | None:
    """An unusable URL, or a broker that refuses its credentials or vhost, is a configuration error,
    reported before anything is written (cli.md); a broker that cannot be reached is not (events
    wait in the outbox): its reason is returned."""
    if not url:
        return None
    from kombu import Connection

    from projections.apply.relay import BrokerRefused, check_broker

    try:
        Connection(url).transport  # noqa: B018 - resolves the transport named by the URL's scheme
        return check_broker(url)
    except (KeyError, ImportError, ValueError) as error:
        problem = f"unusable: {error}"
    except BrokerRefused as error:
        problem = str(error)
    click.echo(f"recompute: RECOMPUTE_BROKER_URL: {problem}", err=True)
    sys.exit(2)

def relay_outbox(app: App) -> RelayReport | None:
    """The App's relay, its database errors a RunFailed (the events wait in the outbox)."""
    try:
        return app.relay()
    except Error as error:
        raise RunFailed(f"relay failed: {' '.join(str(error).split())}; the events wait in the outbox") from error

def relay_line(report: RelayReport | None) -> str:
    if report is None:
        return "events: RECOMPUTE_BROKER_URL is not set; they wait in the outbox"
    line = f"events: published {report.published}, {report.waiting} waiting in the outbox"
    return line + (f" (broker unreachable: {report.error}; `recompute relay` publishes them)" if report.error else "")
