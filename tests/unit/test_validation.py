"""credit_contracts.validation: one set of rules for ids, names, titles and ratings, and the
escaping of stored text for a terminal. Properties over arbitrary text (hypothesis), then the
cases a person would try."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from credit_contracts import validation
from credit_contracts.validation import (
    BATCH_ID_PATTERN,
    ID_PATTERN,
    NAME_MAX,
    RATINGS,
    TITLE_MAX,
    Invalid,
    entity_id,
    name,
    printable,
    rating,
    refused,
    title,
)

ANY_TEXT = st.text(st.characters(codec=None), max_size=60)
"""Every code point, surrogates included (a lone one comes from undecodable argv)."""
TRICKY = st.sampled_from(
    [
        "\x1b",
        "\x07",
        "\x00",
        "\x7f",
        "\x85",
        "\x9b",
        "\n",
        "\t",
        "\r",
        "\u200b",
        "\u200c",
        "\u200d",
        "\u200e",
        "\u200f",
        "\u202a",
        "\u202e",
        "\u2066",
        "\u2069",
        "\u061c",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\ufffe",
        "\U0010ffff",
        "\ue000",
        "\ud800",
        "\u0301",
        "\u00a0",
        "\u3000",
        " ",
        "e",
        "é",
        "Å",
        "\u212b",
        "👩",
        "\U0001f3fb",
        "\ufe0f",
        "\U000e0067",
        "ß",
        "ﬀ",
        "a",
        "A",
        "\\",
    ]
)
MIXED = st.lists(st.one_of(TRICKY, st.characters(codec=None)), max_size=40).map("".join)
TEXT = st.one_of(ANY_TEXT, MIXED)
CONTROL_CATEGORIES = {"Cc", "Cs", "Co", "Zl", "Zp"}


def accepted(check: object, value: str) -> str | None:
    try:
        return check(value)  # type: ignore[operator, no-any-return]
    except Invalid:
        return None


# -- names and titles ----------------------------------------------------------------------


@settings(max_examples=400)
@given(TEXT)
@example("  Ada  ")
@example("e\u0301")
@example(" \u0301x")
@example("\u212b")
def test_a_name_is_normalised_once_for_all(value: str) -> None:
    for check in (name, title):
        once = accepted(check, value)
        if once is None:
            continue
        assert check(once) == once, "idempotent"
        assert once == unicodedata.normalize("NFC", once) == once.strip()
        assert not any(refused(ch) for ch in once)
        assert not any(unicodedata.category(ch) in CONTROL_CATEGORIES for ch in once)
        assert len(once) <= (NAME_MAX if check is name else TITLE_MAX)
        assert once or check is title


@given(TEXT)
def test_a_name_is_refused_exactly_when_a_rule_says_so(value: str) -> None:
    text = unicodedata.normalize("NFC", value).strip()
    ok = bool(text) and len(text) <= NAME_MAX and not any(refused(ch) for ch in text)
    assert (accepted(name, value) is not None) == ok
    assert (accepted(title, value) is not None) == (ok or text == "")


@given(st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Zl", "Zp", "Cf"))))
def test_ordinary_text_is_accepted_as_it_is(value: str) -> None:
    text = unicodedata.normalize("NFC", value).strip()
    noncharacter = any(0xFDD0 <= ord(ch) <= 0xFDEF or ord(ch) & 0xFFFE == 0xFFFE for ch in text)
    if text and len(text) <= NAME_MAX and not noncharacter:
        assert name(value) == text


@pytest.mark.parametrize(
    "value",
    [
        "Ada Lovelace",
        "Zoë Müller-Lüdenscheidt",
        "O'Brien & Söhne, Ltd.",
        "株式会社トヨタ",
        "شركة أرامكو",
        "מגדל",
        "Ωmega Σ",
        "दिल्ली",
        "ناصر\u200cی",  # a zero width non-joiner, needed in Persian
        "👩\u200d💻 Labs",  # a ZWJ emoji sequence
        "👍🏽 ok",
        "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # a tag sequence
        "❤\ufe0f",
        "Acme\u00a0Corp",
        "x" * NAME_MAX,
    ],
)
def test_names_in_any_script_with_emoji_are_accepted(value: str) -> None:
    assert name(value) == unicodedata.normalize("NFC", value)
    assert printable(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the name is empty"),
        ("   \t ", "the name is empty"),
        ("x" * (NAME_MAX + 1), "the name is 201 characters long: at most 200"),
        ("x" * 100_000, "at most 200"),
        ("Evil\x1b[31mRed", "U+001B (ESCAPE)"),
        ("Evil\x1b]0;title\x07", "U+001B (ESCAPE)"),
        ("two\nlines", "U+000A (LINE FEED)"),
        ("tab\there", "U+0009 (TAB)"),
        ("del\x7f", "U+007F"),
        ("csi\x9b31m", "U+009B"),
        ("nul\x00", "U+0000"),
        ("abc\u202egnp.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("a\u2066b\u2069", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
        ("a\u200fb", "U+200F (RIGHT-TO-LEFT MARK)"),
        ("a\u200bb", "U+200B (ZERO WIDTH SPACE)"),
        ("a\u2028b", "U+2028 (LINE SEPARATOR)"),
        ("priv\ue000", "U+E000"),
        ("surrogate\udcff", "U+DCFF"),
        ("non\ufffe", "U+FFFE"),
    ],
)
def test_a_bad_name_is_refused_with_a_message_naming_the_field(value: str, message: str) -> None:
    with pytest.raises(Invalid, match=re.escape(message)) as refused_name:
        name(value)
    text = str(refused_name.value)
    assert text.startswith("the name")
    assert printable(text) == text and "\n" not in text, "the message itself is safe to print"
    assert len(text) < 300, "a long value is cut in the message"
    with pytest.raises(ValueError, match="customer name"):
        name(value, "customer name")


def test_a_title_may_be_empty_and_is_stripped() -> None:
    assert title("") == "" and title("  ") == ""
    assert title("  Loan  ") == "Loan"
    with pytest.raises(Invalid, match="the title is 201 characters long"):
        title("t" * 201)
    with pytest.raises(Invalid, match="contract title"):
        title("\x1b[2J", "contract title")


def test_names_are_nfc() -> None:
    assert name("e\u0301") == "\u00e9"
    assert name("\u212b") == "\u00c5"  # ANGSTROM SIGN is canonically Å


# -- printable -----------------------------------------------------------------------------


@settings(max_examples=400)
@given(TEXT)
def test_printable_leaves_no_control_character(value: str) -> None:
    shown = printable(value)
    assert not any(refused(ch) for ch in shown)
    assert not any(unicodedata.category(ch) in CONTROL_CATEGORIES for ch in shown)
    if not any(refused(ch) for ch in value):
        assert shown == value
    shown.encode("utf-8")  # no lone surrogate left: it can be written to any terminal


@given(TEXT)
def test_printable_keeps_every_accepted_name(value: str) -> None:
    accepted_name = accepted(name, value)
    if accepted_name is not None:
        assert printable(accepted_name) == accepted_name


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("\x1b]0;x\x07", "\\x1b]0;x\\x07"),
        ("x\u202ey", "x\\u202ey"),
        ("line\nnext", "line\\x0anext"),
        ("\U000f0000", "\\U000f0000"),
        ("\ud800", "\\ud800"),
        ("a\\x1b", "a\\x1b"),  # a backslash is text like any other
        ("👩\u200d💻", "👩\u200d💻"),
    ],
)
def test_printable_escapes_visibly(value: str, shown: str) -> None:
    assert printable(value) == shown


# -- ratings -------------------------------------------------------------------------------

SPACES = st.text(st.sampled_from(" \t\n\r\u00a0\u3000"), max_size=3)


@given(st.sampled_from(RATINGS), SPACES, SPACES, st.lists(st.booleans(), min_size=3))
def test_every_rating_is_accepted_in_any_case_with_spaces(
    grade: str, before: str, after: str, lower: list[bool]
) -> None:
    mixed = "".join(ch.lower() if low else ch for ch, low in zip(grade, lower, strict=False))
    assert rating(before + mixed + after) == grade


@given(TEXT)
@example("ß")
@example("\uff41\uff41")
@example("A A")
@example("AAAA")
def test_nothing_else_is_a_rating(value: str) -> None:
    stripped = value.strip()
    expected = stripped.upper() if stripped.isascii() and stripped.upper() in RATINGS else None
    assert accepted(rating, value) == expected


def test_an_unknown_rating_lists_the_valid_ones() -> None:
    with pytest.raises(Invalid, match="unknown credit rating 'ZZ': use one of AAA, AA, A, BBB"):
        rating("ZZ")
    assert validation.RATINGS is RATINGS


# -- ids -----------------------------------------------------------------------------------

ID_CHARS = st.sampled_from("aZ09_.:@-/ \x00é\n")
IDS = st.one_of(
    TEXT,
    st.text(ID_CHARS, max_size=140),
    st.text(st.sampled_from("ab-._:@9"), min_size=120, max_size=140),
)


@settings(max_examples=400)
@given(IDS)
@example("a" * 128)
@example("a" * 129)
@example("abc\n")
@example("-abc")
def test_an_id_is_accepted_exactly_when_it_matches_the_pattern(value: str) -> None:
    matches = re.fullmatch(ID_PATTERN, value) is not None
    assert (accepted(entity_id, value) == value) == matches
    assert (accepted(entity_id, value) is None) == (not matches)


def test_id_rules() -> None:
    for good in ("a", "acme", "k1", "9", "a.b_c:d@e-f", "x" * 128, "CUST-0001"):
        assert entity_id(good) == good
    for bad, message in [
        ("", "the id is empty"),
        ("x" * 129, "is 129 characters: at most 128"),
        ("-k", "bad id '-k'"),
        (" acme", "bad id ' acme'"),
        ("a b", "bad id"),
        ("a/b", "bad id"),
        ("é", "bad id"),
        ("acme\n", "bad id 'acme\\x0a'"),
        ("a\x1b[2J", "bad id 'a\\x1b[2J'"),
    ]:
        with pytest.raises(Invalid, match=re.escape(message)):
            entity_id(bad)
    with pytest.raises(Invalid, match="bad contract id"):
        entity_id("?", "contract id")


def test_the_id_pattern_is_a_json_schema_pattern() -> None:
    for pattern in (ID_PATTERN, BATCH_ID_PATTERN):
        assert pattern.startswith("^") and pattern.endswith("$")
        assert re.fullmatch(r"[\^\[\]A-Za-z0-9_.:@\-{},$]+", pattern), "no Python-only syntax"


def test_every_derived_batch_id_is_a_batch_id() -> None:
    from credit_contracts.processes.credit_change import batch_id_for

    longest = "c" * 128
    for customer_id in ("acme", longest, "demo1-customer-1"):
        batch = batch_id_for(customer_id, 10**12)
        assert validation.batch_id(batch) == batch
    with pytest.raises(Invalid, match="bad batch id"):
        validation.batch_id("credit acme 1")
