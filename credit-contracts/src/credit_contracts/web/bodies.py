"""Request bodies: what a client may send, checked before any command is built.

Unknown fields are refused (a typo such as `ratting` must not be silently ignored), and
strings are never coerced from numbers. Ids, names, titles and ratings pass the same checks as
on the command line (`credit_contracts.validation`: one set of rules, documented there); the
JSON schema of each field says as much of the rule as a schema can, so the OpenAPI document
tells a client what it may send. Domain rules (whether a change changes anything, whether a
customer exists) stay in the aggregates.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from credit_contracts import validation
from credit_contracts.validation import ID_PATTERN, RATINGS

__all__ = ["ID_PATTERN", "KEY_PATTERN"]

KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
"""An idempotency key: 1 to 200 visible ASCII characters (a UUID, say)."""

_REFUSED = (  # validation.refused in the Basic Multilingual Plane, as a character class
    r"\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060\u2066-\u2069"
    r"\ue000-\uf8ff\ufdd0-\ufdef\ufeff\ufffe\uffff"
)
"""Not the surrogates (U+D800-U+DFFF): Rust's regex (jsonschema-rs, which schemathesis uses)
cannot name them, and valid Unicode text has none; the validator refuses a lone one."""
_REFUSED_BEYOND = (  # the characters themselves: no escape reads the same in every dialect
    "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(1, 15))
    + "\U000f0000-\U0010ffff"
)
_NONE_BEYOND = rf"(?![\s\S]*[{_REFUSED_BEYOND}])"
"""validation.refused beyond the BMP (noncharacters, private use planes 15 and 16), as a
lookahead: a generator (hypothesis) need not enumerate its 131,000 characters."""
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""White space as `str.strip()` removes it (`str.isspace`), spelled out: `\\s` means another
set in each regex dialect."""


def _stripped(longest: int, *, required: bool) -> str:
    """What `validation.name`/`title` accept: any white space around (stripped), then up to
    `longest` characters, none refused, the first and the last not white space. (NFC is not
    expressible: the rare text that NFC shortens or lengthens past `longest` is misjudged.)"""
    core = rf"[^{_REFUSED}{_SPACE}](?:[^{_REFUSED}]{{0,{longest - 2}}}[^{_REFUSED}{_SPACE}])?"
    return rf"^{_NONE_BEYOND}[{_SPACE}]*{core if required else f'(?:{core})?'}[{_SPACE}]*$"


TEXT_PATTERN = _stripped(validation.TITLE_MAX, required=False)
NAME_PATTERN = _stripped(validation.NAME_MAX, required=True)
RATING_PATTERN = (
    rf"^[{_SPACE}]*("
    + "|".join("".join(f"[{c}{c.lower()}]" for c in grade) for grade in RATINGS)
    + rf")[{_SPACE}]*$"
)
"""One of the ratings, any case, white space around it allowed (it is normalised away)."""


def documented(**schema: Any) -> Any:
    """Schema keywords that document a rule the validator enforces (with clearer words)."""
    return Field(json_schema_extra=schema)


Id = Annotated[
    str,
    documented(pattern=ID_PATTERN, description="letters, digits and `_ . : @ -`, at most 128"),
    AfterValidator(validation.entity_id),
]
"""Enforced by the validator (its messages are the clear ones); the schema documents it."""
Name = Annotated[
    str,
    documented(
        pattern=NAME_PATTERN,
        description=f"NFC-normalised and stripped, then 1 to {validation.NAME_MAX} characters; "
        "no control or bidirectional characters",
    ),
    AfterValidator(validation.name),
]
Title = Annotated[
    str,
    documented(
        pattern=TEXT_PATTERN,
        description=f"as a name, but it may be empty (at most {validation.TITLE_MAX} characters)",
    ),
    AfterValidator(validation.title),
]
Rating = Annotated[
    str,
    documented(pattern=RATING_PATTERN, description=f"one of {', '.join(RATINGS)} (any case)"),
    AfterValidator(validation.rating),
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewCustomer(Body):
    name: Name
    rating: Rating
    id: Id | None = None


class RatingChange(Body):
    rating: Rating


class NewContract(Body):
    customer_id: Id
    id: Id | None = None
    title: Title = ""


class RunRequest(Body):
    advance_days: Annotated[float, Field(gt=0, le=366)] | None = None
    """Move a virtual clock forward by this many days at most, doing what falls due."""


RATE_PATTERN = (
    r"^[1-9][0-9]{0,8}/(?:[1-9][0-9]{0,5}(?:\.[0-9]{1,6})?)?"
    r"(?:s|sec|second|seconds|min|minute|minutes|h|hour|hours|d|day|days)$"
)
"""A rate limit as `RateLimit.parse` reads it, narrowed to what a schema can say exactly:
1 to 999,999,999 items per (an optional count of) a unit, lower case, no spaces."""


def _whole(value: float) -> int:
    if not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


WholeCount = Annotated[
    float,
    Field(ge=1, le=2**31 - 1),
    AfterValidator(_whole),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 2**31 - 1}),
]
"""A count from 1 to 2**31 - 1. JSON Schema counts `5.0` as an integer; strict pydantic
would not: read as a number, then held to a whole one."""


class BatchChange(Body):
    """Pause, resume or cancel a batch; the reason goes into the batch's audit event."""

    reason: Title = ""


class Throttle(Body):
    """Change how fast a batch dispatches: `max_in_flight`, `rate`, or both. `rate: null`
    lifts the rate limit; leaving `rate` out keeps the one in force."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra=lambda schema: _throttle_schema(schema),
    )

    max_in_flight: WholeCount | None = None
    rate: (
        Annotated[
            str,
            Field(
                pattern=RATE_PATTERN,
                description="`100/hour`, `5/min`, `2/s`, `10/15min`; null lifts the limit",
            ),
        ]
        | None
    ) = None
    reason: Title = ""

    @model_validator(mode="after")
    def something_to_change(self) -> Throttle:
        if not {"max_in_flight", "rate"} & self.model_fields_set:
            raise ValueError("give max_in_flight, rate, or both")
        if "max_in_flight" in self.model_fields_set and self.max_in_flight is None:
            raise ValueError("max_in_flight: leave it out to keep it; null is no count")
        return self


def _throttle_schema(schema: dict[str, Any]) -> None:
    """At least one setting; `max_in_flight` a count when given (not null, unlike `rate`)."""
    schema["anyOf"] = [{"required": ["max_in_flight"]}, {"required": ["rate"]}]
    schema["properties"]["max_in_flight"] = {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**31 - 1,
        "description": "commands dispatched and not yet run, at most",
    }
