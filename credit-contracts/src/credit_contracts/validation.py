"""What the reference system accepts as ids, names, titles and ratings: one set of rules for
every way in (the command line now, the HTTP API too), and the escaping of stored text for a
terminal.

Each check is a plain function: it takes a `str` and returns it normalised, or raises
`Invalid` (a `ValueError`) whose message names the field and says what is accepted.

Ids (`entity_id`; customer and contract ids)
    1 to 128 characters: ASCII letters, digits and `_ . : @ -`, the first a letter or digit
    (`ID_PATTERN`, also usable as a JSON-schema/ECMA pattern). Ids are exact: nothing is
    stripped, case is kept.

Batch ids (`batch_id`)
    Derived from a customer id (`credit-<customer id>-<change number>`): the same characters
    as ids, at most 160 (`BATCH_ID_PATTERN`).

Names (`name`; customer names) and titles (`title`; contract titles)
    1. Unicode NFC normalisation (a precomposed `é` and `e` + combining accent are one name);
    2. surrounding whitespace stripped (Python's `str.strip()`: Unicode white space);
    3. a name must not be empty after that, a title may be; at most 200 characters (code
       points, after normalisation: `NAME_MAX`, `TITLE_MAX`);
    4. refused anywhere in the text (`refused(ch)`):
       - control characters, Unicode category Cc: C0 (U+0000-U+001F, including ESC, tab,
         newline, carriage return), DEL (U+007F) and C1 (U+0080-U+009F): they drive the
         terminal (ANSI/OSC escape sequences) or break a line;
       - surrogates (Cs): not characters (a lone one comes from undecodable input);
       - private-use characters (Co): they display differently with every font;
       - line and paragraph separators (Zl U+2028, Zp U+2029): line breaks;
       - noncharacters (U+FDD0-U+FDEF and U+xFFFE/U+xFFFF of every plane);
       - the bidirectional formatting characters, which make text display in another order
         than it is stored: U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069;
       - invisible characters that make two different names look the same: U+200B (zero
         width space), U+2060 (word joiner), U+FEFF (zero width no-break space / BOM).
    Everything else is accepted: letters and digits of any script, punctuation, symbols,
    spaces (including no-break spaces), emoji with their joiners and modifiers (U+200D
    zero width joiner, U+200C zero width non-joiner, variation selectors, tag characters of
    flag sequences), and code points unassigned in this Python's Unicode database (so a new
    emoji is not refused before Python knows it).

Ratings (`rating`)
    Surrounding whitespace stripped, ASCII upper-cased (`aa` is `AA`), then one of `RATINGS`
    (AAA, AA, A, BBB, BB, B, CCC, CC, C, D).

Output (`printable`)
    Text read from a store may predate these rules (or come from the engine directly): before
    it is written to a terminal, every refused character is replaced by a visible escape,
    `\\x1b` for ESC, `\\u202e` for U+202E, `\\U000f0000` beyond the BMP. Text without refused
    characters is written unchanged.
"""

from __future__ import annotations

import re
import unicodedata

from credit_contracts.domain.customer import RATINGS

__all__ = [
    "BATCH_ID_PATTERN",
    "ID_MAX",
    "ID_PATTERN",
    "NAME_MAX",
    "RATINGS",
    "TITLE_MAX",
    "Invalid",
    "batch_id",
    "entity_id",
    "name",
    "printable",
    "rating",
    "refused",
    "title",
]


class Invalid(ValueError):
    """A value the system does not accept; the message names the field and says why."""


ID_MAX = 128
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
"""Customer and contract ids (a JSON-schema pattern: ECMA-compatible, anchored)."""
BATCH_ID_MAX = 160
BATCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,159}$"
"""Batch ids: `credit-<customer id>-<change number>`, so longer than a customer id."""
NAME_MAX = 200
TITLE_MAX = 200
SHOWN = 40
"""At most this many characters of a refused value are quoted in an error message."""

_ID = re.compile(ID_PATTERN)
_BATCH_ID = re.compile(BATCH_ID_PATTERN)
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Zl", "Zp"})
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
INVISIBLE = frozenset("\u200b\u2060\ufeff")


def refused(ch: str) -> bool:
    """Whether `ch` (one character) may not appear in a name or a title."""
    code = ord(ch)
    return (
        unicodedata.category(ch) in REFUSED_CATEGORIES
        or ch in BIDI_CONTROLS
        or ch in INVISIBLE
        or 0xFDD0 <= code <= 0xFDEF
        or (code & 0xFFFE) == 0xFFFE
    )


def escaped(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` for a terminal: each refused character as a visible escape, the rest as is."""
    if not any(refused(ch) for ch in text):
        return text
    return "".join(escaped(ch) if refused(ch) else ch for ch in text)


def quoted(value: str) -> str:
    """A refused value as an error message shows it: quoted, escaped, cut if long."""
    shown = value if len(value) <= SHOWN else value[:SHOWN] + "..."
    return "'" + printable(shown) + "'"


def _checked_id(value: str, what: str, pattern: re.Pattern[str], longest: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"the {what} must be a string")
    if pattern.fullmatch(value):
        return value
    if not value:
        raise Invalid(f"the {what} is empty")
    if len(value) > longest:
        raise Invalid(f"the {what} {quoted(value)} is {len(value)} characters: at most {longest}")
    raise Invalid(
        f"bad {what} {quoted(value)}: use letters, digits and . _ : @ -, "
        f"starting with a letter or digit (at most {longest})"
    )


def entity_id(value: str, what: str = "id") -> str:
    """A customer or contract id, as given (ids are exact): see `ID_PATTERN`."""
    return _checked_id(value, what, _ID, ID_MAX)


def batch_id(value: str, what: str = "batch id") -> str:
    """A batch id, as given: see `BATCH_ID_PATTERN`."""
    return _checked_id(value, what, _BATCH_ID, BATCH_ID_MAX)


def _text(value: str, what: str, longest: int, *, required: bool) -> str:
    if not isinstance(value, str):
        raise Invalid(f"the {what} must be a string")
    text = unicodedata.normalize("NFC", value).strip()
    if required and not text:
        raise Invalid(f"the {what} is empty")
    if len(text) > longest:
        raise Invalid(f"the {what} is {len(text)} characters long: at most {longest}")
    for at, ch in enumerate(text, start=1):
        if refused(ch):
            raise Invalid(
                f"the {what} {quoted(text)} contains {describe(ch)} at character {at}: "
                "control, bidirectional and invisible formatting characters are not allowed"
            )
    return text


def describe(ch: str) -> str:
    """A character as an error message names it: U+001B (ESCAPE)."""
    label = unicodedata.name(ch, "")
    if not label and unicodedata.category(ch) == "Cc":
        label = {"\x1b": "ESCAPE", "\n": "LINE FEED", "\t": "TAB", "\r": "CARRIAGE RETURN"}.get(
            ch, "CONTROL"
        )
    return f"U+{ord(ch):04X}" + (f" ({label})" if label else "")


def name(value: str, what: str = "name") -> str:
    """A name: NFC, stripped, 1 to `NAME_MAX` characters, no refused character."""
    return _text(value, what, NAME_MAX, required=True)


def title(value: str, what: str = "title") -> str:
    """A title: as a name, but it may be empty (at most `TITLE_MAX` characters)."""
    return _text(value, what, TITLE_MAX, required=False)


def rating(value: str, what: str = "credit rating") -> str:
    """A credit rating: stripped, upper-cased (ASCII), one of `RATINGS`."""
    if not isinstance(value, str):
        raise Invalid(f"the {what} must be a string")
    grade = value.strip()
    if grade.isascii():
        grade = grade.upper()
    if grade not in RATINGS:
        raise Invalid(f"unknown {what} {quoted(value.strip())}: use one of {', '.join(RATINGS)}")
    return grade
