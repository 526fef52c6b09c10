"""Building frozen pydantic models from data that is already valid, cheaply."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def trusted(cls: type[M], **values: Any) -> M:
    """`cls.model_construct(**values)` for data already validated (made in domain/, or checked by an ingester), without its per-field alias lookups.

    Every field must be given (the JSON round-trip tests catch a missing one). This is what keeps
    building facts and states cheap when there are hundreds of thousands of them.
    """
    return trusted_dict(cls, values)  # `values` is this call's own dict


def trusted_dict(cls: type[M], values: dict[str, Any]) -> M:
    """`trusted(cls, **values)` that takes `values` itself as the model's fields (no copy): the
    caller gives up the dict (the log's decoder, for the dict orjson has just made)."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
