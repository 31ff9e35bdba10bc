"""`credit-contracts`: the reference system from the shell.

    credit-contracts customers register NAME RATING [--id ID]
    credit-contracts customers change-rating ID RATING      credit-contracts customers show ID
    credit-contracts contracts open CUSTOMER_ID [--id ID] [--title T]
    credit-contracts contracts sign ID          credit-contracts contracts show ID
    credit-contracts batches list [--customer ID]
    credit-contracts batches show ID
    credit-contracts run [--clock system|virtual] [--force]
    credit-contracts demo --contracts N [--customers K] [--never-sign F] [--seed S] [--workers W]
    credit-contracts worker [--clock system|virtual] [--force]
    credit-contracts serve [--host H] [--port P] [--worker] [--clock system|virtual] [--force]

Every command takes `--db URL` (default: sqlite:///credit_contracts.db; the demo's own
default is sqlite:///credit_contracts_demo.db) and `--json`: then stdout holds exactly one JSON
object. Commands only record; `run` (or workers) process. Ids, names, titles and ratings are
checked by `credit_contracts.validation`. An error is one line `error: ...` on stderr (and
{"error": ...} on stdout with --json), exit code 2 (130 when interrupted); nothing is stored
for a refused command. Text read from the store is escaped before it reaches a terminal.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from credit_contracts import demo as demo_plan
from credit_contracts import validation
from credit_contracts.app import build_app, customer_batches, open_system
from credit_contracts.demo_run import drive, finish_demo, run_demo, work
from credit_contracts.domain.customer import Customer
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    CustomerCreditRatingChanged,
    OpenContract,
    RegisterCustomer,
    SignContract,
)
from credit_contracts.processes.credit_change import batch_id_for
from credit_contracts.simulator import load_simulation
from credit_contracts.validation import printable
from credit_contracts.views.batches import batch_view
from credit_contracts.views.contracts_by_customer import get_contract
from credit_contracts.views.customer_summary import customer_summary
from credit_contracts.views.timeline import timeline
from procession import (
    Clock,
    Command,
    CommandResult,
    ConfigurationError,
    NotFound,
    Runtime,
    Store,
    SystemClock,
    VirtualClock,
    clikit,
    humanize,
    new_id,
    open_store,
    reconnecting,
)
from procession.clikit import id_column

HELP = (__doc__ or "").split("\n\n")[0]
cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help=HELP, rich_markup_mode="markdown"
)
customers_cli = typer.Typer(no_args_is_help=True, help="Register customers, change ratings.")
contracts_cli = typer.Typer(no_args_is_help=True, help="Open, sign and inspect contracts.")
batches_cli = typer.Typer(no_args_is_help=True, help="Follow credit-change batches.")
cli.add_typer(customers_cli, name="customers")
cli.add_typer(contracts_cli, name="contracts")
cli.add_typer(batches_cli, name="batches")

DEFAULT_DB = "sqlite:///credit_contracts.db"
DEMO_DB = "sqlite:///credit_contracts_demo.db"
"""The demo's own default store: a demo never lands in the store of the other commands."""
Db = Annotated[str, typer.Option("--db", help="store URL (sqlite:///... or postgresql://...)")]
DemoDb = Annotated[
    str,
    typer.Option(
        "--db",
        help="store URL: a fresh store or this demo's own (sqlite:///... or postgresql://...)",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, emoji=False)


class ClockKind(StrEnum):
    system = "system"
    virtual = "virtual"


class Failure(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# -- opening the store ---------------------------------------------------------------------


def require_store(url: str) -> None:
    """Refuse to create a SQLite file as a side effect of reading or changing nothing."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:" and not os.path.exists(path):
            raise Failure(f"no store at {path}: create one with `customers register` or `demo`")


def counted(n: int, thing: str) -> str:
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def uses_virtual_time(store: Store) -> bool:
    return store.clock_kind == "virtual"


def store_clock(store: Store) -> Clock:
    """The store's own time: its durable virtual clock if it has one (a demo), else the system's."""
    return VirtualClock(store=store) if uses_virtual_time(store) else SystemClock()


def open_runtime(url: str, *, create: bool = False, readonly: bool = False) -> Runtime:
    """The reference system on the store at `url`, with the store's simulation and clock.

    `readonly=True` for commands that only look: the store is opened read-only (a read-only
    file works; nothing is created, migrated or written), and they show the read models as
    they are, saying so on stderr if they lag behind the log.
    """
    if not create:
        require_store(url)
    store = open_store(url, create=create, readonly=readonly)
    try:
        return Runtime(build_app(load_simulation(store)), store, store_clock(store))
    except BaseException:
        store.close()
        raise


def record(runtime: Runtime, command: Command) -> CommandResult:
    """Execute a command, then bring the read models up to it: a `show` right after sees it
    (commands that only look never write, so the writers keep the read models current)."""
    result = runtime.send(command)
    if result.position:
        runtime.wait_for(result.position)
    return result


def note_lag(runtime: Runtime) -> None:
    """A note on stderr when the read models are behind the log (a run was interrupted, or
    workers are busy): what is shown is true as of an earlier position."""
    seen = runtime.checkpoints()
    head = seen.pop("head")
    views = [int(v or 0) for name, v in seen.items() if name.startswith("projection:")]
    behind = min(views, default=head)
    if behind < head:
        err.print(
            f"note: the read models are {counted(head - behind, 'event')} behind the log; "
            "`credit-contracts run` (or a worker) brings them up to date"
        )


def customer_id_of(value: str) -> str:
    return validation.entity_id(value, "customer id")


def contract_id_of(value: str) -> str:
    return validation.entity_id(value, "contract id")


# -- output --------------------------------------------------------------------------------


def emit(data: dict[str, Any], as_json: bool, *lines: str) -> None:
    """One JSON object (json.dumps escapes every control and non-ASCII character), or lines
    for a person, stored text in them escaped (`printable`)."""
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        for line in lines:
            out.print(printable(line), markup=False, soft_wrap=True)


def shown(value: object) -> Text:
    """Stored text in a table cell: neither markup nor terminal control."""
    return Text(printable("-" if value is None else str(value)))


def heading(text: str) -> str:
    """Stored text in a table title (which rich reads as markup)."""
    return escape(printable(text))


def key_values(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=heading(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(shown(key), shown(value))
    return table


def print_table(table: Table) -> None:
    clikit.print_table(table, out)


def batch_rows(b: dict[str, Any]) -> dict[str, Any]:
    """A batch (`batch_view`) for people: a failed item is a terminated contract, done ones
    were re-confirmed; rate and ETA in units people read, counts with separators."""
    count = humanize.count
    return {
        "id": b["id"],
        "customer": b["customer_id"],
        "rating change": b["change_no"],
        "status": b["status"],
        "contracts": "all found" if b["enumerated"] else "still being found",
        "total": count(b["total"]),
        "done": count(b["done"]),
        "terminated": count(b["failed"]),
        "skipped": count(b["skipped"]),
        "cancelled": count(b["cancelled"]),
        "pending": count(b["pending"]),
        "in flight": count(b["in_flight"]),
        "finished": f"{count(b['finished'])} of {count(b['total'])}",
        "rate": humanize.rate(b["rate"]),
        "eta": humanize.duration(b["eta_seconds"]),
        "superseded by": b["superseded_by"],
    }


# -- customers -----------------------------------------------------------------------------


@customers_cli.command("register")
def register_customer(
    name_arg: Annotated[str | None, typer.Argument(metavar="NAME", show_default=False)] = None,
    rating_arg: Annotated[
        str | None, typer.Argument(metavar="RATING", help="AAA, AA, A, BBB ... D")
    ] = None,
    name: Annotated[str | None, typer.Option(help="instead of NAME")] = None,
    rating_: Annotated[str | None, typer.Option("--rating", help="instead of RATING")] = None,
    customer_id: Annotated[str | None, typer.Option("--id", help="default: a new id")] = None,
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Register a customer with a credit rating: `register NAME RATING` or `--name --rating`."""
    cid = customer_id_of(customer_id) if customer_id is not None else new_id()
    who = validation.name(one_of(name_arg, name, "name"), "customer name")
    grade = validation.rating(one_of(rating_arg, rating_, "rating"))
    runtime = open_runtime(db, create=True)
    with runtime.store:
        record(runtime, RegisterCustomer(customer_id=cid, name=who, rating=grade))
    data = {"id": cid, "name": who, "rating": grade}
    emit(data, as_json, f"registered customer {cid}: {who}, rating {grade}")


def one_of(argument: str | None, option: str | None, what: str) -> str:
    """A value given as an argument or as an option, not both, not neither."""
    if argument is not None and option is not None:
        raise Failure(f"the {what} is given twice: as {what.upper()} and as --{what}")
    if argument is None and option is None:
        raise Failure(f"a customer needs a {what}: give {what.upper()} or --{what}")
    return str(argument if argument is not None else option)


@customers_cli.command("change-rating")
def change_rating(
    customer_id: str,
    rating_: Annotated[str, typer.Argument(metavar="RATING")],
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Change a customer's credit rating: its contracts go back to pending (run to process)."""
    customer_id = customer_id_of(customer_id)
    grade = validation.rating(rating_)
    runtime = open_runtime(db)
    with runtime.store:
        record(runtime, ChangeCustomerCreditRating(customer_id=customer_id, new_rating=grade))
        stream = runtime.store.read_stream(Customer.stream_id(customer_id))
        last = [e.data for e in stream if e.type == CustomerCreditRatingChanged.__name__][-1]
    data = {
        "id": customer_id,
        "old_rating": last["old_rating"],
        "new_rating": last["new_rating"],
        "change_no": last["change_no"],
        "batch_id": batch_id_for(customer_id, last["change_no"]),
    }
    emit(
        data,
        as_json,
        f"customer {customer_id}: rating {data['old_rating']} -> {data['new_rating']}; "
        f"batch {data['batch_id']} starts on the next `credit-contracts run`",
    )


@customers_cli.command("show")
def show_customer(customer_id: str, db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """A customer's rating, rating changes and contracts per status."""
    customer_id = customer_id_of(customer_id)
    runtime = open_runtime(db, readonly=True)
    with runtime.store:
        note_lag(runtime)
        summary = customer_summary(runtime.store, customer_id)
    if summary is None:
        raise NotFound(f"customer {customer_id} does not exist")
    data: dict[str, Any] = {
        "id": customer_id,
        "name": summary.name,
        "rating": summary.rating,
        "rating_changes": summary.rating_changes,
        "completed_changes": summary.completed_changes,
        "contracts": {
            "active": summary.active,
            "pending": summary.pending,
            "resigned": summary.resigned,
            "terminated": summary.terminated,
        },
    }
    if as_json:
        emit(data, True)
    else:
        rows = {k: v for k, v in data.items() if k != "contracts"} | data["contracts"]
        print_table(key_values(f"customer {customer_id}", rows))


# -- contracts -----------------------------------------------------------------------------


@contracts_cli.command("open")
def open_contract(
    customer_id: str,
    contract_id: Annotated[str | None, typer.Option("--id", help="default: a new id")] = None,
    title: Annotated[str, typer.Option(help="what the contract is about")] = "",
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Open a contract for an existing customer (it belongs to that customer for life)."""
    customer_id = customer_id_of(customer_id)
    cid = contract_id_of(contract_id) if contract_id is not None else new_id()
    title = validation.title(title, "contract title")
    runtime = open_runtime(db)
    with runtime.store:
        record(runtime, OpenContract(contract_id=cid, customer_id=customer_id, title=title))
    data = {"id": cid, "customer_id": customer_id, "title": title, "status": "active"}
    emit(data, as_json, f"opened contract {cid} for customer {customer_id}")


@contracts_cli.command("sign")
def sign_contract(contract_id: str, db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """The customer re-signs a pending contract (run to have it re-confirmed)."""
    contract_id = contract_id_of(contract_id)
    runtime = open_runtime(db)
    with runtime.store:
        result = record(runtime, SignContract(contract_id=contract_id))
    data = {"id": contract_id, "status": "resigned", "changed": result.events > 0}
    emit(data, as_json, f"contract {contract_id} is re-signed")


@contracts_cli.command("show")
def show_contract(contract_id: str, db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """A contract's status and its timeline: every event, the command that caused it."""
    contract_id = contract_id_of(contract_id)
    runtime = open_runtime(db, readonly=True)
    with runtime.store:
        note_lag(runtime)
        row = get_contract(runtime.store, contract_id)
        entries = timeline(runtime.store, contract_id)
    if row is None:
        raise NotFound(f"contract {contract_id} does not exist")
    data: dict[str, Any] = {
        "id": contract_id,
        "customer_id": row.customer_id,
        "title": row.title,
        "status": row.status,
        "timeline": [
            {
                "position": e.position,
                "at": e.occurred_at,
                "event": e.event_type,
                "command": e.command,
                "summary": e.summary,
                "correlation_id": e.correlation_id,
                "causation_id": e.causation_id,
            }
            for e in entries
        ],
    }
    if as_json:
        emit(data, True)
        return
    table = Table(
        title=heading(f"contract {contract_id} ({row.status}, customer {row.customer_id})")
    )
    table.add_column("position", justify="right")
    table.add_column("at")
    table.add_column("command")
    table.add_column("what happened")
    for e in entries:
        at = e.occurred_at[:19].replace("T", " ")
        table.add_row(humanize.count(e.position), shown(at), shown(e.command), shown(e.summary))
    print_table(table)


# -- batches -------------------------------------------------------------------------------


@batches_cli.command("list")
def list_batches(
    customer: Annotated[str | None, typer.Option(help="only this customer's batches")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    db: Db = DEFAULT_DB,
    as_json: Json = False,
) -> None:
    """Credit-change batches (all, or one customer's), newest first, with their progress."""
    if customer is not None:
        customer = customer_id_of(customer)
    runtime = open_runtime(db, readonly=True)
    with runtime.store:
        if customer is None:
            found = runtime.batches(limit)
        else:
            note_lag(runtime)
            if customer_summary(runtime.store, customer) is None:
                raise NotFound(f"customer {customer} does not exist")
            found = customer_batches(runtime, customer)[::-1][:limit]
    batches = [batch_view(progress) for progress in found]
    if as_json:
        emit({"batches": batches}, True)
        return
    if not batches:
        out.print("no credit-change batches yet")
        return
    table = Table(title="credit-change batches")
    id_column(table, "id")
    id_column(table, "customer")
    table.add_column("status")
    # a batch's failed item is a contract terminated: the domain's word, not an error's colour
    for column in ("total", "done", "terminated", "open"):
        table.add_column(column, justify="right")
    table.add_column("rate", justify="right")
    table.add_column("eta", justify="right")
    for b in batches:
        still = b["pending"] + b["in_flight"]
        counts = (humanize.count(n) for n in (b["total"], b["done"], b["failed"], still))
        table.add_row(
            shown(b["id"]),
            shown(b["customer_id"]),
            shown(b["status"]),
            *counts,
            humanize.rate(b["rate"]),
            humanize.duration(b["eta_seconds"]),
        )
    print_table(table)


@batches_cli.command("show")
def show_batch(batch_id: str, db: Db = DEFAULT_DB, as_json: Json = False) -> None:
    """A batch's progress: counts per item status, rate (items per process second), ETA."""
    batch_id = validation.batch_id(batch_id)
    runtime = open_runtime(db, readonly=True)
    with runtime.store:
        progress = runtime.progress(batch_id)
    if progress is None:
        raise NotFound(f"batch {batch_id} does not exist")
    data = batch_view(progress)
    if as_json:
        emit(data, True)
    else:
        print_table(key_values(f"batch {batch_id}", batch_rows(data)))


# -- running -------------------------------------------------------------------------------


def pick_clock(
    store: Store, asked: ClockKind | None, demo: bool = False, force: bool = False
) -> bool:
    """True for virtual time: as asked, else the store's own kind of time (a demo's: virtual).

    Virtual time is for ever: a store with a history on system time (events, no virtual
    clock, no demo) is switched to it only with `force`; an empty store needs no force.
    """
    virtual = demo or uses_virtual_time(store)
    if asked is ClockKind.system and virtual:
        raise Failure(
            "this store runs on virtual time (a demo's timers are days away): use --clock virtual"
        )
    if asked is ClockKind.virtual and not virtual and not force:
        events = store.head_position()
        if events > 0:
            raise Failure(
                f"this store has run on system time ({counted(events, 'event')}): --clock "
                "virtual would switch it to virtual time for ever (its timers would fire on "
                "simulated days); add --force to do that, or use a fresh store"
            )
    return virtual if asked is None else asked is ClockKind.virtual


ClockOption = Annotated[
    ClockKind | None,
    typer.Option("--clock", help="system or virtual (default: the store's own kind of time)"),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="with --clock virtual: switch a store with a system-time history for ever"
    ),
]


@cli.command("run")
def run(
    db: Db = DEFAULT_DB, clock: ClockOption = None, force: Force = False, as_json: Json = False
) -> None:
    """Process until nothing is ready, finishing an interrupted demo first.

    On virtual time the clock jumps to the next due timer whenever the system is idle, so a
    demo's fourteen days pass in seconds; a killed demo resumes where it stopped. A store
    that has run on system time is switched to virtual time (for ever) only with --force.
    """
    require_store(db)
    started = time.monotonic()
    with open_store(db) as store:
        plan = demo_plan.load_plan(store)
        virtual = pick_clock(store, clock, demo=plan is not None, force=force)
    runtime = open_system(db, plan.simulation if plan else None, virtual=virtual)
    with runtime.store:
        if plan is not None:
            report_demo(finish_demo(runtime, plan, started, err), as_json)
            return
        head = runtime.store.head_position()
        stats = drive(runtime)
        data = {
            "rounds": stats.rounds,
            "work": stats.work,
            "clock_advances": stats.clock_advances,
            "events": runtime.store.head_position() - head,
            "seconds": round(time.monotonic() - started, 3),
            "clock": "virtual" if virtual else "system",
        }
    if head == 0 and data["events"] == 0:  # a demo killed before its plan left nothing
        emit(data, as_json, "the store is empty: nothing to run")
        return
    rounds, events = counted(stats.rounds, "round"), counted(int(data["events"]), "new event")
    emit(data, as_json, f"idle after {rounds}: {events}")


def report_demo(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(data, True)
        return
    table = Table(title="credit-contracts demo", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    check = (
        "[green]as the simulation predicted[/]"
        if data["matches_expected"]
        else (
            f"[red]the simulation predicted {data['expected_reconfirmed']:,} / "
            f"{data['expected_terminated']:,}[/]"
        )
    )
    rows = [
        ("contracts", f"{data['contracts']:,} of {data['customers']} customers"),
        (f"rating change of {data['changed_customer']}", f"{data['affected']:,} contracts"),
        ("reconfirmed", f"{data['reconfirmed']:,}"),
        ("terminated", f"{data['terminated']:,}"),
        ("still_pending", f"{data['still_pending']:,}"),
        ("outcome", check),
        ("batch", f"{data['batch_id']}: {data['batch_status']}"),
        ("virtual time", humanize.duration(data["virtual_days"] * 86400)),
        ("events", f"{data['events']:,} in {humanize.duration(data['seconds'])}"),
        ("events/s", humanize.number(data["events_per_second"], 3)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    print_table(table)


@cli.command()
def demo(
    contracts: Annotated[int, typer.Option(help="how many contracts")] = 1000,
    customers_: Annotated[int, typer.Option("--customers", help="how many customers")] = 3,
    never_sign: Annotated[float, typer.Option(help="share of contracts never re-signed")] = 0.1,
    seed: Annotated[int, typer.Option(help="the simulation's seed")] = 1,
    workers: Annotated[int, typer.Option(help="worker processes (>1: PostgreSQL only)")] = 1,
    db: DemoDb = DEMO_DB,
    as_json: Json = False,
) -> None:
    """Customers, contracts, one rating change, simulated customers, on virtual time.

    Most contracts belong to the customer whose rating changes; each of their customers
    re-signs promptly, after a reminder, too late or never. The run survives SIGKILL at any
    moment: `credit-contracts run --db URL --clock virtual` finishes it with the same outcome.

    The demo runs on its own store (default sqlite:///credit_contracts_demo.db): a store
    holding anything but this same demo is refused, never changed.
    """
    plan = demo_plan.DemoPlan(
        seed=seed, contracts=contracts, customers=customers_, never_sign=never_sign
    )
    if workers < 1:
        raise Failure(f"--workers must be at least 1, not {workers}")
    if workers > 1 and not db.startswith(("postgresql:", "postgres:")):
        raise Failure(
            f"--workers {workers} needs PostgreSQL: a SQLite store belongs to one process"
        )
    report_demo(run_demo(db, plan, workers, err), as_json)


@cli.command()
def worker(
    db: Db = DEFAULT_DB,
    clock: ClockOption = None,
    force: Force = False,
    stop_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
    as_json: Json = False,
) -> None:
    """Run a worker until SIGTERM/SIGINT; on PostgreSQL any number share one store.

    On virtual time a worker moves the clock only when no worker has anything left to do
    at the current instant, so outcomes do not depend on how many workers run. SIGINT and
    SIGTERM are its way to stop: it finishes its transaction and reports `stopped`.
    """
    require_store(db)
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    if stop_with_parent:
        threading.Thread(target=watch_parent, args=(os.getppid(), stop), daemon=True).start()

    def start() -> Runtime:
        with open_store(db) as store:
            is_demo = demo_plan.load_plan(store) is not None
            virtual = pick_clock(store, clock, demo=is_demo, force=force)
        return open_system(db, virtual=virtual)

    try:
        # a database unreachable, or a connection terminated, while it starts: tried again
        runtime = reconnecting(db, "start-up", start, stop)
        if runtime is not None:
            typer.echo(f"worker {os.getpid()} started on {runtime.store.backend.name}", err=True)
            with runtime.store:
                work(runtime, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    emit({"worker": os.getpid(), "stopped": True}, as_json, f"worker {os.getpid()} stopped")


@cli.command()
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[
        str, typer.Option(help="address to bind; not loopback only with a token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    worker_: Annotated[
        bool, typer.Option("--worker", help="run the processes in a background thread")
    ] = False,
    clock: ClockOption = None,
    force: Force = False,
    simulate: Annotated[bool, typer.Option(help="simulated customers re-sign (or not)")] = False,
    seed: Annotated[int, typer.Option(help="the simulation's seed")] = 1,
    never_sign: Annotated[float, typer.Option(help="share who never re-sign")] = 0.1,
    token_file: Annotated[
        str | None, typer.Option(help="file holding the API token (else $CREDIT_CONTRACTS_TOKEN)")
    ] = None,
    protect_reads: Annotated[bool, typer.Option(help="reads need the token too")] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="a host name clients use to reach the server (repeatable)"),
    ] = None,
    max_body: Annotated[int, typer.Option(min=1, help="largest request body, bytes")] = 64 * 1024,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve the HTTP API and the dashboard (see docs/security.md) until Ctrl-C.

    Without a token (CREDIT_CONTRACTS_TOKEN or --token-file) it serves loopback only; with
    one, every change needs `Authorization: Bearer <token>`.
    """
    from credit_contracts.simulator import SimulationConfig
    from credit_contracts.web.serve import Options, run_server

    options = Options(
        host=host,
        port=port,
        token_file=token_file,
        protect_reads=protect_reads,
        allowed_hosts=tuple(allowed_host or ()),
        max_body=max_body,
        access_log=access_log,
    )
    security = options.security()  # refuses an unsafe setting before the store is opened
    if db_exists(db):
        with open_store(db) as store:
            is_demo = demo_plan.load_plan(store) is not None
            virtual = pick_clock(store, clock, demo=is_demo, force=force)
    else:
        virtual = clock is ClockKind.virtual
    simulation = SimulationConfig(seed=seed, never_sign=never_sign) if simulate else None
    err.print(f"serving {escape(printable(db))} on http://{host}:{port} ({security.summary()})")
    run_server(db, options, security, virtual=virtual, simulation=simulation, worker=worker_)


def db_exists(url: str) -> bool:
    """A SQLite URL names a file that exists, or the URL is not a SQLite file (a server's)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return os.path.exists(url[len("sqlite:///") :])
    return True


def watch_parent(parent: int, stop: threading.Event) -> None:
    """A worker spawned by `demo --workers` stops when the demo dies (even by SIGKILL)."""
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


# -- errors --------------------------------------------------------------------------------


def exit_code(argv: list[str] | None = None) -> int:
    """Run the command line in this process (tests do); its exit code."""
    refusals = (Failure, ConfigurationError)
    return clikit.run(cli, "credit-contracts", argv, refusals=refusals, printable=printable)


def main(argv: list[str] | None = None) -> None:
    sys.exit(exit_code(argv))


if __name__ == "__main__":
    main()
