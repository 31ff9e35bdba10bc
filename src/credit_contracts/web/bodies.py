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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
