"""Which of several Stripe observations of one object with the same `created` is the later (rules-v1 §1).

Stripe's clock has whole seconds: an object created and changed at once gives several events with
one `created`. Between two of them, in order:

  1. Stripe's own record of the change: where exactly one of the two has `data.previous_attributes`
     equal to the other's object on those attributes, it came after that one;
  2. the event type: `*.created` < `*.updated` (and any other type, and a list read) < `*.deleted`;
  3. the status further along (stripe_shapes.progress: the status rank, then for an invoice its
     attempt_count and amount_paid, which only grow).

`latest(observations)` is the one no other came after, decided on the set alone, so whatever order
the observations arrive in (webhooks, the Events API, a list read), the same one wins. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from domain.events import StripeObjectObserved
from domain.stripe_shapes import progress


def _matches(before: Any, now: Any) -> bool:
    """Whether an attribute's value `before` a change is what `now` holds: nested objects (metadata)
    on the keys `before` names (inside one, a key absent holds null; an empty object matches only an
    empty one), anything else by equality."""
    if isinstance(before, Mapping):
        if not isinstance(now, Mapping):
            return False
        if not before:
            return not now
        return all(_matches(value, now.get(key)) for key, value in before.items())
    return bool(before == now)


def came_after(a: StripeObjectObserved, b: StripeObjectObserved) -> bool:
    """Rule 1: `a` records a change from exactly what `b` holds (a's previous_attributes on b's
    object: each attribute there, with that value; a deleted object holds none)."""
    before = a.previous_attributes
    return bool(before) and all(key in b.object and _matches(value, b.object[key])
                                for key, value in (before or {}).items())


def type_rank(o: StripeObjectObserved) -> int:
    """Rule 2: created 0, any other type (or a list read) 1, deleted 2."""
    kind = o.event_type or ""
    if kind.endswith(".deleted") or (o.deleted and not kind.endswith(".created")):
        return 2
    return 0 if kind.endswith(".created") else 1


def _rank(o: StripeObjectObserved) -> tuple[int, tuple[int, ...]]:
    return type_rank(o), progress(o.table, o.object, deleted=o.deleted)


def compare(a: StripeObjectObserved, b: StripeObjectObserved) -> int:
    """> 0: `a` is the later of the two; < 0: `b` is; 0: the rules cannot tell."""
    a_after, b_after = came_after(a, b), came_after(b, a)
    if a_after != b_after:
        return 1 if a_after else -1
    ra, rb = _rank(a), _rank(b)
    return (ra > rb) - (ra < rb)


def latest(observations: Sequence[StripeObjectObserved]) -> StripeObjectObserved:
    """The observation none of the others came after (by `compare`); of several, or where the rules
    go round in a circle, the one of the highest type, progress and then evt_ id (so the choice
    depends on the set only, never on the order it came in)."""
    if len(observations) == 1:
        return observations[0]
    last = [o for o in observations if not any(compare(other, o) > 0 for other in observations if other is not o)]
    return max(last or observations, key=lambda o: (_rank(o), o.event_id or ""))
