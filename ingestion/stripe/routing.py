"""Which account each Stripe observation belongs to (pure).

An object reaches its account through its customer: a customer names its account in
`metadata.account_id`, and every other object names its customer. Observations are routed in
order; an object whose customer names no account at its point in the batch is deferred, and after
the whole batch it is routed again with every mapping the batch taught (a customer.created read
after its invoice, as the Events API pages newest first). What is still deferred then waits for
its customer (parked, retried when a mapping for that customer arrives).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ingestion.stripe.translate import Observation

T = TypeVar("T")  # what the caller carries along with each observation (the raw body, its position)


@dataclass
class Routing(Generic[T]):
    routed: list[tuple[T, Observation, str]] = field(default_factory=list)  # (item, observation, account)
    learned: dict[str, str] = field(default_factory=dict)  # customer -> account, new or changed
    deferred: list[tuple[T, Observation]] = field(default_factory=list)  # customer names no account yet

    def waits_for(self) -> set[str]:
        """The customers the deferred observations wait for."""
        return {observation.customer_id or "" for _, observation in self.deferred}


def route(observed: Sequence[tuple[T, Observation]], accounts: Mapping[str, str]) -> Routing[T]:
    """Routes in order with `accounts` (customer -> account, as far as known) and what the batch teaches."""
    routing: Routing[T] = Routing()
    for item, observation in observed:
        customer = observation.customer_id or ""
        if observation.object_type == "customer" and observation.account_id:
            if (routing.learned.get(customer) or accounts.get(customer)) != observation.account_id:
                routing.learned[customer] = observation.account_id
        account = observation.account_id or routing.learned.get(customer) or accounts.get(customer)
        if account:
            routing.routed.append((item, observation, account))
        else:
            routing.deferred.append((item, observation))
    return routing


def route_deferred(routing: Routing[T], accounts: Mapping[str, str]) -> list[tuple[T, Observation]]:
    """Routes the deferred observations with `accounts` and what the batch taught; returns those still waiting."""
    waiting = []
    for item, observation in routing.deferred:
        customer = observation.customer_id or ""
        account = routing.learned.get(customer) or accounts.get(customer)
        if account:
            routing.routed.append((item, observation, account))
        else:
            waiting.append((item, observation))
    routing.deferred = []
    return waiting
