"""A catalogue of bad input to `credit-contracts`: every case is refused with its exit code,
exactly one `error:` line on stderr (escaped, no traceback), with --json exactly one
{"error": ...} object on stdout, and the store exactly as it was. Then stored text that
predates the rules, escaped on the way to the terminal; the demo's own store; `--force`.

The commands run in this process (`run_here`, through the same `clikit.run` as the real
entry point): the whole catalogue takes a few seconds.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from credit_contracts.app import open_system
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    OpenContract,
    RegisterCustomer,
)
from credit_contracts.validation import printable
from procession import open_store

from .support import Result, run_here

REFUSED = 2
"""The exit code of every refusal: bad input, a domain rule, a usage error."""


def here_ok(*args: str) -> dict[str, Any]:
    result = run_here(*args, "--json")
    assert result.code == 0, result.stderr
    return result.data


def snapshot(url: str) -> tuple[str, list[tuple[Any, ...]]]:
    """Everything a command could have changed: the log and the store's kind of time."""
    with open_store(url) as store:
        events = [
            (e.position, e.stream_id, e.version, e.type, e.data, e.metadata)
            for e in store.read_all()
        ]
        return store.clock_kind, events


@dataclass(frozen=True)
class Stores:
    shop: Path
    """A system-time store: customer acme (AA), its active contract k1, contract k2."""
    demo: Path
    """The demo seed=3 contracts=5, finished."""


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    folder = tmp_path_factory.mktemp("templates")
    shop = f"sqlite:///{folder}/shop.db"
    here_ok("customers", "register", "Acme", "AA", "--id", "acme", "--db", shop)
    here_ok("contracts", "open", "acme", "--id", "k1", "--title", "Loan", "--db", shop)
    here_ok("contracts", "open", "acme", "--id", "k2", "--db", shop)
    demo = f"sqlite:///{folder}/demo.db"
    assert here_ok("demo", "--contracts", "5", "--seed", "3", "--db", demo)["still_pending"] == 0
    return Stores(folder / "shop.db", folder / "demo.db")


def copied(source: Path, folder: Path) -> str:
    """A private copy of a closed SQLite store (its WAL folded into the file on close)."""
    target = folder / source.name
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return f"sqlite:///{target}"


# (case, command line as a shell would split it, what the error says); each is refused with
# exit code 2. `{store}` is a copy of the shop store (the default --db), `{demo}` a copy of
# the finished demo's, `{missing}` a path with no file, `{tmp}` the test's own folder;
# `{n201}` is 201 n's (`LONG`).
LONG = {"i129": "i" * 129, "b161": "b" * 161, "n201": "n" * 201, "t201": "t" * 201}
LONG["n100k"] = "n" * 100_000
CASES: list[tuple[str, str, str]] = [
    # ids
    ("id with a space", "customers register X AA --id 'bad id'", "bad customer id 'bad id'"),
    ("id starting with a dash", "customers register X AA --id=-k", "bad customer id '-k'"),
    (
        "id of 129 characters",
        "customers register X AA --id '{i129}'",
        "is 129 characters: at most 128",
    ),
    ("id not ASCII", "customers register X AA --id 'café'", "bad customer id 'café'"),
    ("empty id", "customers register X AA --id ''", "the customer id is empty"),
    (
        "id with an escape",
        "customers register X AA --id 'a\x1b[31m'",
        "bad customer id 'a\\x1b[31m'",
    ),
    ("id with a slash (show)", "customers show a/b", "bad customer id 'a/b'"),
    ("id with a space (change-rating)", "customers change-rating 'a b' A", "bad customer id"),
    ("customer id of open", "contracts open 'acme acme'", "bad customer id"),
    ("contract id of open", "contracts open acme --id 'k 2'", "bad contract id 'k 2'"),
    ("contract id of sign", "contracts sign k/1", "bad contract id 'k/1'"),
    ("empty contract id", "contracts show ''", "the contract id is empty"),
    ("customer option of batches list", "batches list --customer 'a;b'", "bad customer id 'a;b'"),
    ("batch id with spaces", "batches show 'credit acme 1'", "bad batch id"),
    ("batch id of 161 characters", "batches show '{b161}'", "is 161 characters: at most 160"),
    # names
    ("empty name", "customers register '' AA", "the customer name is empty"),
    ("blank name", "customers register '   ' AA", "the customer name is empty"),
    (
        "blank name option",
        "customers register --name '\t ' --rating AA",
        "the customer name is empty",
    ),
    (
        "name of 201 characters",
        "customers register '{n201}' AA",
        "201 characters long: at most 200",
    ),
    ("name of 100 KB", "customers register '{n100k}' AA", "100000 characters long: at most 200"),
    ("name with an ANSI colour", "customers register 'Red\x1b[31mCorp' AA", "U+001B (ESCAPE)"),
    (
        "name with an OSC title",
        "customers register 'Evil\x1b]0;owned\x07Corp' AA",
        "'Evil\\x1b]0;owned\\x07Corp'",
    ),
    ("name with a newline", "customers register 'Two\nLines' AA", "U+000A (LINE FEED)"),
    (
        "name with a right-to-left override",
        "customers register 'abc\u202egnp.exe' AA",
        "U+202E (RIGHT-TO-LEFT OVERRIDE)",
    ),
    ("name with an isolate", "customers register 'a\u2067b' AA", "U+2067"),
    ("name with DEL", "customers register 'x\x7f' AA", "U+007F"),
    ("name with a C1 CSI", "customers register 'x\x9b2J' AA", "U+009B"),
    ("name with a zero width space", "customers register 'Ac\u200bme' AA", "U+200B"),
    # titles
    (
        "title of 201 characters",
        "contracts open acme --title '{t201}'",
        "the contract title is 201 characters long",
    ),
    (
        "title with an escape",
        "contracts open acme --title '\x1b[2J'",
        "the contract title '\\x1b[2J' contains U+001B",
    ),
    ("title with a newline", "contracts open acme --title 'a\nb'", "U+000A (LINE FEED)"),
    ("title with a bidi mark", "contracts open acme --title 'a\u200fb'", "U+200F"),
    # ratings
    (
        "unknown rating",
        "customers register X ZZ",
        "unknown credit rating 'ZZ': use one of AAA, AA, A,",
    ),
    ("empty rating", "customers register X ''", "unknown credit rating ''"),
    ("rating with a space inside", "customers register X 'A A'", "unknown credit rating 'A A'"),
    (
        "full-width rating",
        "customers register X '\uff21\uff21'",
        "unknown credit rating '\uff21\uff21'",
    ),
    ("unknown new rating", "customers change-rating acme Q", "unknown credit rating 'Q'"),
    (
        "rating with a control character",
        "customers change-rating acme 'A\x1b'",
        "unknown credit rating 'A\\x1b'",
    ),
    # unknown ids and domain rules
    ("unknown customer (show)", "customers show nobody", "customer nobody does not exist"),
    (
        "unknown customer (change-rating)",
        "customers change-rating nobody A",
        "customer nobody does not exist",
    ),
    ("unknown customer (open)", "contracts open nobody", "customer nobody does not exist"),
    ("unknown contract (sign)", "contracts sign nope", "contract nope does not exist"),
    ("unknown contract (show)", "contracts show nope", "contract nope does not exist"),
    ("unknown batch", "batches show credit-acme-9", "batch credit-acme-9 does not exist"),
    (
        "unknown customer (batches list)",
        "batches list --customer nobody",
        "customer nobody does not exist",
    ),
    ("customer registered twice", "customers register X AA --id acme", "already registered"),
    ("the same rating", "customers change-rating acme ' aa '", "already has credit rating AA"),
    ("contract opened twice", "contracts open acme --id k1", "contract k1 already exists"),
    ("signing an active contract", "contracts sign k1", "only a pending contract can be signed"),
    # the demo and the kind of time
    ("demo on a store that is no demo", "demo --contracts 5", "holds 3 events and no demo"),
    (
        "demo with another plan",
        "demo --contracts 6 --seed 3 --db '{demo}'",
        "already holds the demo seed=3 contracts=5",
    ),
    (
        "demo with another seed",
        "demo --contracts 5 --seed 4 --db '{demo}'",
        "already holds the demo seed=3",
    ),
    ("run on system time, a demo store", "run --clock system --db '{demo}'", "use --clock virtual"),
    (
        "run on virtual time, a system store",
        "run --clock virtual",
        "switch it to virtual time for ever",
    ),
    ("worker on virtual time, a system store", "worker --clock virtual", "add --force"),
    # stores
    ("show, no store", "customers show acme --db 'sqlite:///{missing}'", "no store at"),
    ("run, no store", "run --db 'sqlite:///{missing}'", "no store at"),
    ("worker, no store", "worker --db 'sqlite:///{missing}'", "no store at"),
    ("sign, no store", "contracts sign k1 --db 'sqlite:///{missing}'", "no store at"),
    ("batches list, no store", "batches list --db 'sqlite:///{missing}'", "no store at"),
    (
        "unknown URL scheme",
        "customers register X AA --db mysql://localhost/x",
        "unknown store URL scheme 'mysql'",
    ),
    ("not a URL", "customers show acme --db credit.db", "credit.db"),
    ("empty URL", "customers register X AA --db ''", "URL"),
    ("no such folder", "customers register X AA --db 'sqlite:///{tmp}/no/such/x.db'", "no/such"),
    ("demo in no such folder", "demo --contracts 5 --db 'sqlite:///{tmp}/no/such/x.db'", "no/such"),
    # flags and numbers
    ("unknown option", "contracts open acme --colour red", "No such option: --colour"),
    ("unknown command", "customers frobnicate", "No such command 'frobnicate'"),
    ("unknown clock", "run --clock sundial", "Invalid value for '--clock'"),
    ("missing argument", "contracts open", "Missing argument"),
    ("missing rating", "customers register X", "a customer needs a rating"),
    ("name given twice", "customers register X AA --name Y", "the name is given twice"),
    ("force without a value", "run --force=yes", "--force"),
    ("contracts not a number", "demo --contracts many", "Invalid value for '--contracts'"),
    (
        "negative contracts",
        "demo --contracts -5",
        "--contracts must be between 1 and 1000000, not -5",
    ),
    ("no customers", "demo --customers 0", "--customers must be between 1 and 1000"),
    ("negative never-sign", "demo --never-sign -0.1", "--never-sign must be between 0 and 1"),
    ("no workers", "demo --workers 0", "--workers must be at least 1"),
    ("workers on SQLite", "demo --workers 2", "--workers 2 needs PostgreSQL"),
    ("negative limit", "batches list --limit -1", "Invalid value for '--limit'"),
    ("zero limit", "batches list --limit 0", "Invalid value for '--limit'"),
]


def expand(command: str, values: dict[str, str]) -> list[str]:
    """The command's arguments, placeholders filled in, `--db {store}` unless it has a --db."""
    args = [arg.format(**values, **LONG) if "{" in arg else arg for arg in shlex.split(command)]
    return args if "--db" in args else [*args, "--db", values["store"]]


def check_refusal(result: Result, code: int, message: str, as_json: bool) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"one error line on stderr, not {result.stderr!r}"
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 5
    assert printable(line) == line and line.isprintable(), "the error line is safe to print"
    assert message in line, line
    if as_json:
        assert result.data == {"error": line[len("error: ") :]}
    else:
        assert result.stdout == ""
    return line


@pytest.mark.parametrize(
    ("command", "message"),
    [pytest.param(command, message, id=name) for name, command, message in CASES],
)
def test_bad_input_is_refused_and_changes_nothing(
    templates: Stores, tmp_path: Path, command: str, message: str
) -> None:
    values = {
        "store": copied(templates.shop, tmp_path),
        "demo": copied(templates.demo, tmp_path),
        "missing": str(tmp_path / "missing.db"),
        "tmp": str(tmp_path),
    }
    argv = expand(command, values)
    touched = argv[argv.index("--db") + 1]
    stores = [values["store"], values["demo"]]
    before = [snapshot(url) for url in stores]
    files = sorted(p.name for p in tmp_path.iterdir())
    human = check_refusal(run_here(*argv), REFUSED, message, as_json=False)
    scripted = check_refusal(run_here(*argv, "--json"), REFUSED, message, as_json=True)
    assert human == scripted
    assert [snapshot(url) for url in stores] == before, f"{touched} was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == files, "no store was created"


def test_the_catalogue_is_large() -> None:
    assert len(CASES) >= 40
    assert len({name for name, *_ in CASES}) == len(CASES)


# -- stored text on the way to a terminal ----------------------------------------------------

EVIL_ID = "evil\x1b[8m"
EVIL_NAME = "Acme\x1b]0;pwned\x07 \u202egnp.exe"
EVIL_TITLE = "Loan\x1b[2J\x1b[H\nforged line"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store written by the engine directly, before any check: escapes in ids and text."""
    url = f"sqlite:///{tmp_path_factory.mktemp('legacy')}/legacy.db"
    runtime = open_system(url)
    with runtime.store:
        runtime.send(RegisterCustomer(customer_id="acme", name=EVIL_NAME, rating="AA"))
        runtime.send(OpenContract(contract_id="k1", customer_id="acme", title=EVIL_TITLE))
        runtime.send(RegisterCustomer(customer_id=EVIL_ID, name="Evil", rating="AA"))
        runtime.send(OpenContract(contract_id="k2", customer_id=EVIL_ID, title=""))
        runtime.send(ChangeCustomerCreditRating(customer_id=EVIL_ID, new_rating="B"))
        runtime.run_until_idle()
    return url


def assert_escaped(result: Result, *expected: str) -> None:
    assert result.code == 0, result.stderr
    text = result.stdout
    for ch in ("\x1b", "\x07", "\u202e"):
        assert ch not in text, f"{ch!r} reached the terminal: {text!r}"
    for part in expected:
        assert part in text, (part, text)


def test_stored_control_characters_are_escaped_for_people(legacy: str) -> None:
    db = ("--db", legacy)
    assert_escaped(run_here("customers", "show", "acme", *db), "\\x1b]0;pwned\\x07", "\\u202e")
    shown = run_here("contracts", "show", "k1", *db)
    assert_escaped(shown, "Loan\\x1b[2J\\x1b[H\\x0aforged")
    assert "\nforged line" not in shown.stdout
    assert_escaped(run_here("batches", "list", *db), "evil\\x1b[8m")
    assert_escaped(run_here("contracts", "show", "k2", *db), "evil\\x1b[8m")


def test_stored_control_characters_stay_data_in_json(legacy: str) -> None:
    """--json output is JSON: json.dumps writes \\u001b, and the text reads back as stored."""
    result = run_here("customers", "show", "acme", "--db", legacy, "--json")
    assert result.code == 0 and result.stdout.isascii() and "\x1b" not in result.stdout
    assert json.loads(result.stdout)["name"] == EVIL_NAME
    contract = run_here("contracts", "show", "k1", "--db", legacy, "--json").data
    assert contract["title"] == EVIL_TITLE


def test_a_valid_unicode_name_is_shown_as_it_is(tmp_path: Path) -> None:
    db = ("--db", f"sqlite:///{tmp_path}/u.db")
    name = "  Zoë 👩\u200d💻 株式会社  "
    registered = here_ok("customers", "register", name, " bbb ", "--id", "zoe", *db)
    assert registered == {"id": "zoe", "name": name.strip(), "rating": "BBB"}
    human = run_here("customers", "register", "e\u0301 :smile: [bold]x[/]", "aa", *db)
    assert human.code == 0
    assert "\u00e9 :smile: [bold]x[/], rating AA" in human.stdout, "NFC, no emoji codes, no markup"
    shown = run_here("customers", "show", "zoe", *db)
    assert shown.code == 0 and "Zoë 👩\u200d💻 株式会社" in shown.stdout


# -- the demo's store, and the way to virtual time -------------------------------------------


def test_the_demo_has_its_own_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    here_ok("customers", "register", "Acme", "AA", "--id", "acme")  # the default store
    default = snapshot("sqlite:///credit_contracts.db")
    data = here_ok("demo", "--contracts", "5", "--seed", "2")
    assert data["still_pending"] == 0
    assert (tmp_path / "credit_contracts_demo.db").exists()
    assert snapshot("sqlite:///credit_contracts.db") == default
    again = here_ok("demo", "--contracts", "5", "--seed", "2")  # the same demo: resumed, a no-op
    assert again["events"] == 0
    refused = run_here("demo", "--contracts", "5", "--db", "sqlite:///credit_contracts.db")
    check_refusal(refused, 2, "holds 1 event and no demo", as_json=False)
    assert snapshot("sqlite:///credit_contracts.db") == default


def test_virtual_time_for_a_store_with_history_takes_force(
    templates: Stores, tmp_path: Path
) -> None:
    url = copied(templates.shop, tmp_path)
    ran = here_ok("run", "--clock", "virtual", "--force", "--db", url)
    assert ran["clock"] == "virtual"
    assert snapshot(url)[0] == "virtual"
    assert here_ok("run", "--clock", "virtual", "--db", url)["clock"] == "virtual"  # now its own
    assert here_ok("run", "--db", url)["clock"] == "virtual"


def test_an_empty_store_goes_virtual_without_force(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    open_store(url).close()
    assert here_ok("run", "--clock", "virtual", "--db", url)["clock"] == "virtual"
    assert snapshot(url) == ("virtual", [])
