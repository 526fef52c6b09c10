"""The seam to Stripe: `StripeReader`, with the real implementation over `stripe.StripeClient`.

Errors are the client's own (`stripe.AuthenticationError`, `stripe.APIConnectionError`, ...);
network retries are the client's own mechanism (`max_network_retries`).

List pages are fetched through the client's requestor (its retries, headers and error mapping)
but parsed with orjson: the client's `json.loads(..., object_pairs_hook=OrderedDict)` is ~60% of
a page's cost and caps a catch-up at ~5,700 events/s of real-sized events (measured by
scripts/bench_stripe_standin.py). `_requestor` is private, hence the exact pin of `stripe`;
tests/integration/test_stripe_ingest.py covers both the pages and the typed errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import orjson
import stripe

LIST_PATHS = {"customer": "/v1/customers", "subscription": "/v1/subscriptions", "invoice": "/v1/invoices"}
PAGE_SIZE = 100


class StripeReader(Protocol):
    def events(self, *, created_gte: int | None) -> Iterator[dict[str, Any]]:
        """Every event Stripe still holds created at or after `created_gte`, newest first."""

    def listed(self, object_type: str) -> Iterator[dict[str, Any]]:
        """Every current object of a type (subscriptions of every status)."""

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer, or None when Stripe does not know it."""


class StripeApiReader:
    def __init__(self, *, api_key: str, api_base: str | None = None, max_network_retries: int = 3) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
        )

    def events(self, *, created_gte: int | None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"created": {"gte": created_gte}} if created_gte is not None else {}
        return self._pages("/v1/events", params)

    def listed(self, object_type: str) -> Iterator[dict[str, Any]]:
        params = {"status": "all"} if object_type == "subscription" else {}
        return self._pages(LIST_PATHS[object_type], params)

    def check(self) -> None:
        """One cheap request, so a bad key or address fails before anything is written."""
        self._get("/v1/events", {"limit": 1})

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._client.raw_request("get", f"/v1/customers/{customer_id}").data)
        except stripe.InvalidRequestError as error:
            if error.code == "resource_missing":
                return None
            raise

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": PAGE_SIZE, **({"starting_after": cursor} if cursor else {})}
            page = self._get(path, page_params)
            items = page["data"]
            yield from items
            if not page.get("has_more") or not items:
                return
            cursor = items[-1]["id"]

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        requestor = self._client._requestor
        body, code, headers = requestor.request_raw(
            "get", path, params=params, base_address="api", api_mode="V1", usage=["recompute_ingest"])
        if 200 <= code < 300:
            return orjson.loads(body)
        requestor._interpret_response(body, code, headers, "V1")  # raises the client's typed error
        raise stripe.APIError(f"unexpected HTTP {code} from {path}", http_status=code)
