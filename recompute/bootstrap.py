"""The composition root: settings in, connected components out. The only place that wires I/O."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import stripe

from ingestion.jobs import IngestJob
from ingestion.stripe_reader import StripeApiReader
from recompute.embedded import embedded_dsns
from recompute.ownschema import ensure_own_schema
from recompute.settings import DSN_VARIABLES, LEGACY_STORES, Settings, SettingsError

SOURCES = ("cf_prod", "billing_prod", "subs", "stripe")


@dataclass(frozen=True)
class Wiring:
    settings: Settings
    dsns: dict[str, str]  # every store and "eventstore", resolved

    def ingest_jobs(self, source: str, *, batch_size: int = 20_000) -> list[IngestJob]:
        chosen = SOURCES if source == "all" else (source,)
        jobs = []
        for name in chosen:
            if name in LEGACY_STORES:
                jobs.append(IngestJob(source=name, eventstore_dsn=self.dsns["eventstore"],
                                      source_dsn=self.dsns[name], batch_size=batch_size))
            elif self.settings.stripe_api_key:
                jobs.append(self.stripe_job(batch_size=batch_size))
            elif source == "stripe":
                raise SettingsError("STRIPE_API_KEY", "not set, so Stripe cannot be polled")
        return jobs

    def check_stripe(self) -> None:
        """Raises SettingsError naming the variable when Stripe cannot be used as configured."""
        if not self.settings.stripe_api_key:
            return
        reader = StripeApiReader(api_key=self.settings.stripe_api_key, api_base=self.settings.stripe_api_base,
                                 max_network_retries=1)
        try:
            reader.check()
        except stripe.AuthenticationError as error:
            raise SettingsError("STRIPE_API_KEY", f"Stripe refused it: {error.user_message}") from None
        except stripe.APIConnectionError:
            variable = "RECOMPUTE_STRIPE_API_BASE" if self.settings.stripe_api_base else "STRIPE_API_KEY"
            where = self.settings.stripe_api_base or "api.stripe.com"
            raise SettingsError(variable, f"cannot reach Stripe at {where}") from None

    def stripe_job(self, *, batch_size: int = 5_000) -> IngestJob:
        return IngestJob(source="stripe", eventstore_dsn=self.dsns["eventstore"],
                         stripe_api_key=self.settings.stripe_api_key, stripe_api_base=self.settings.stripe_api_base,
                         batch_size=batch_size)


def wire(settings: Settings, *, uses_stripe: bool = False) -> Wiring:
    """Resolves the embedded default where a DSN is unset, checks every database (and Stripe, when the
    command uses it) answers, and only then prepares our tables: a bad setting writes nothing."""
    dsns = dict(settings.dsns)
    if settings.needs_embedded:
        embedded = embedded_dsns(settings.data_dir)
        dsns = {store: dsn or embedded[store] for store, dsn in dsns.items()}
    for store, dsn in dsns.items():
        _check_reachable(DSN_VARIABLES[store], dsn)
    wiring = Wiring(settings=settings, dsns=dsns)  # type: ignore[arg-type]
    if uses_stripe:
        wiring.check_stripe()
    ensure_own_schema(dsns["eventstore"])
    return wiring


def _check_reachable(variable: str, dsn: str) -> None:
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        raise SettingsError(variable, f"cannot connect: {reason}") from None
