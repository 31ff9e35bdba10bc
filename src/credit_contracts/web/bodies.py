"""Request bodies: what a client may send, checked before any command is built.

Unknown fields are refused (a typo such as `ratting` must not be silently ignored), and
strings are never coerced from numbers. Domain rules (which ratings exist, whether a change
changes anything) stay in the aggregates: the API only checks shape.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
"""An idempotency key: 1 to 200 visible ASCII characters (a UUID, say)."""

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""Ids travel in URLs: letters, digits and `_ . : @ -`, at most 128 characters."""

Text = Annotated[str, StringConstraints(max_length=200)]
Rating = Annotated[str, StringConstraints(min_length=1, max_length=10)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewCustomer(Body):
    name: Text
    rating: Rating
    id: Id | None = None


class RatingChange(Body):
    rating: Rating


class NewContract(Body):
    customer_id: Id
    id: Id | None = None
    title: Text = ""


class RunRequest(Body):
    advance_days: Annotated[float, Field(gt=0, le=366)] | None = None
    """Move a virtual clock forward by this many days at most, doing what falls due."""
