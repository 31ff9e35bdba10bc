"""`procession`: run workers and inspect a store from the shell.

    procession worker --app package.module:app --db postgresql://... [--clock virtual]
    procession status --db URL [--json]
    procession parked --db URL [--json]        procession retry ID / skip ID --db URL
    procession rewind CONSUMER POSITION --db URL
    procession migrate --db URL
    procession batches list|show|pause|resume|cancel|throttle [ID] --db URL [--by WHO]

`status` and `parked` only look: they open the store read-only (a read-only file will do)
and never create or migrate anything. `retry`, `skip`, `rewind` and `migrate` change an
existing store and never create one; a worker creates its tables in an empty PostgreSQL
database, never a SQLite file. Errors are printed as one line (no traceback) with a
non-zero exit code.
"""

from __future__ import annotations

import getpass
import importlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import typer
from rich.table import Table

from procession import __version__, clikit, humanize
from procession.app import App
from procession.clikit import cell, id_column, print_table
from procession.errors import ProcessionError
from procession.process.batch import BatchProgress
from procession.process.effects import RateLimit
from procession.runtime import operations
from procession.runtime.clock import Clock, SystemClock, VirtualClock
from procession.runtime.runtime import Runtime, reconnecting
from procession.store import Store, open_store, schema_version
from procession.store.work import timers

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _version(asked: bool) -> None:
    if asked:
        typer.echo(f"procession {__version__}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


DbOption = Annotated[str, typer.Option("--db", help="store URL", envvar="PROCESSION_DB")]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def load_app(spec: str) -> App:
    """`module:attr` where attr is an App or a function returning one."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ProcessionError(f"--app must look like package.module:attribute, got {spec!r}")
    try:
        target: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ProcessionError(f"cannot load app {spec!r}: {exc}") from None
    app = target() if callable(target) and not isinstance(target, App) else target
    if not isinstance(app, App):
        raise ProcessionError(f"{spec!r} is not a procession App")
    return app


def make_clock(kind: str, store: Store) -> Clock:
    if kind == "virtual":
        return VirtualClock(store=store)
    if kind == "system":
        return SystemClock()
    raise ProcessionError(f"--clock must be system or virtual, not {kind!r}")


def fail(message: str) -> None:
    raise ProcessionError(message)


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        typer.echo(line)


def emit(data: dict[str, Any], as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        human()


@cli.command()
def worker(
    app: Annotated[str, typer.Option(help="the application, as module:attribute")],
    db: DbOption,
    clock: Annotated[str, typer.Option(help="system or virtual")] = "system",
    until_idle: Annotated[bool, typer.Option(help="stop when no work is ready")] = False,
    as_json: JsonOption = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on this port (/metrics)")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="the metrics server's address")] = "127.0.0.1",
) -> None:
    """Run a worker until SIGTERM/SIGINT (graceful: the current transaction finishes).

    On PostgreSQL a database that cannot be reached, from start-up on, or a connection that
    drops or is refused never ends it: the failure is logged, and it backs off (up to 5 s)
    and reconnects.
    """
    application = load_app(app)
    if clock not in ("system", "virtual"):  # before connecting: retrying would not mend it
        fail(f"--clock must be system or virtual, not {clock!r}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    reconnects = urlsplit(db).scheme in ("postgresql", "postgres")

    def retrying(what: str, action: Callable[[], Any]) -> Any:
        return reconnecting(db, what, action, stop)

    def start() -> tuple[Store, Runtime]:
        # a worker sets up its tables in an empty PostgreSQL database (the first one to
        # start does), but never makes a SQLite file behind a mistyped path
        store = open_store(db, create=reconnects)
        try:
            return store, Runtime(application, store, make_clock(clock, store))
        except BaseException:
            store.close()
            raise

    opened: tuple[Store, Runtime] | None = retrying("start-up", start)
    if opened is not None:
        store, runtime = opened
        server = None
        if metrics_port is not None:
            from procession import metrics  # prometheus_client: only when asked for

            try:
                server, _ = metrics.serve(
                    metrics.registry(store, runtime), metrics_port, metrics_host
                )
            except OSError as exc:
                store.close()
                fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}")
            typer.echo(f"metrics on http://{metrics_host}:{metrics_port}/metrics", err=True)
        typer.echo(f"worker started on {store.backend.name}", err=True)
        try:
            if until_idle:
                retrying("run", runtime.run_until_idle)
            else:
                runtime.run_forever(stop)
        finally:
            if server is not None:
                server.shutdown()
            store.close()
    seconds = time.monotonic() - started
    typer.echo(f"worker stopped after {humanize.duration(seconds)}", err=True)
    if as_json:
        emit({"stopped": True, "seconds": round(seconds, 3)}, True, print)


# -- output for people (--json prints the data as it is) ------------------------------------


def status_table(data: dict[str, Any], next_due: float | None) -> list[Table]:
    """`procession status` for people: the store at a glance, then each log consumer's
    checkpoint and how far it is behind the log's head."""
    head = int(data["head"])
    overview = Table(title="procession status", show_header=False, title_justify="left")
    overview.add_column(style="bold")
    overview.add_column()
    timer_count = int(data["timers"])
    timers_set = humanize.count(timer_count)
    if timer_count and next_due is not None:
        timers_set += f" (next due {humanize.until(next_due)})"
    parked_count = int(data["parked"])
    rows = [
        ("backend", str(data["backend"])),
        ("log head", f"position {humanize.count(head)}"),
        ("inbox", f"{humanize.counted(int(data['inbox']), 'delivery', 'deliveries')} waiting"),
        ("commands pending", humanize.count(int(data["commands_pending"]))),
        ("timers", timers_set),
        (
            "parked",
            f"{humanize.count(parked_count)} (see `procession parked`)" if parked_count else "0",
        ),
    ]
    for key, value in rows:
        overview.add_row(key, cell(value))
    consumers = Table(title="log consumers", title_justify="left")
    id_column(consumers, "consumer")
    consumers.add_column("checkpoint", justify="right")
    consumers.add_column("lag (events)", justify="right")
    checkpoints: dict[str, Any] = data["checkpoints"]
    for name, position in checkpoints.items():
        at = int(position or 0)
        consumers.add_row(cell(name), humanize.count(at), humanize.count(max(head - at, 0)))
    if not checkpoints:
        consumers.add_row(cell("none yet"), "-", "-")
    return [overview, consumers, workers_table(data.get("workers", []))]


def workers_table(workers: list[dict[str, Any]]) -> Table:
    """The workers the store has seen in the last day: alive, stopped, or gone (killed, or
    its host lost: not seen for a while, never said goodbye)."""
    alive = sum(1 for w in workers if w["alive"])
    table = Table(title=f"workers: {humanize.count(alive)} alive", title_justify="left")
    id_column(table, "worker")
    table.add_column("state")
    table.add_column("last seen", justify="right")
    table.add_column("rounds", justify="right")
    now = time.time()
    for worker in workers:
        state = "alive" if worker["alive"] else "stopped" if worker["stopped_at"] else "gone"
        table.add_row(
            cell(worker["worker_id"]),
            state,
            humanize.ago(now - float(worker["seen_at"])),
            humanize.count(int(worker["rounds"])),
        )
    if not workers:
        table.add_row(cell("none seen"), "-", "-", "-")
    return table


def next_timer(store: Store) -> float | None:
    """Seconds until the earliest timer is due on the store's own clock (negative: overdue)."""
    now = store.now()
    with store.transaction(write=False) as tx:
        due = timers.next_due(tx, -math.inf)
    return None if due is None else due - now


def parked_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"parked: {humanize.count(len(items))}", title_justify="left")
    table.add_column("kind")
    id_column(table, "id")
    table.add_column("attempts", justify="right")
    table.add_column("type")
    id_column(table, "where")
    table.add_column("error")
    for item in items:
        if "instance_id" in item:  # a delivery: to which process instance
            where = f"{item.get('process')}:{item['instance_id']}"
        elif "position" in item:  # a log consumer: the event it failed on
            where = f"position {humanize.count(item['position'])}"
        else:
            where = "-"
        table.add_row(
            cell(item["kind"]),
            cell(item["id"]),
            humanize.count(item["attempts"]),
            cell(item.get("type")),
            cell(where),
            cell(clikit.one_line(str(item["error"] or "-"))),
        )
    return table


def say(text: str) -> None:
    """One line for people, what a store holds in it escaped."""
    typer.echo(clikit.visible(text))


@cli.command()
def status(db: DbOption, as_json: JsonOption = False) -> None:
    """Log head, checkpoints, queued work and parked messages (read-only)."""
    with open_store(db, create=False, readonly=True) as store:
        data = operations.status(store)
        due = next_timer(store) if not as_json and data["timers"] else None

    def human() -> None:
        for table in status_table(data, due):
            print_table(table)

    emit(data, as_json, human)


@cli.command()
def parked(db: DbOption, as_json: JsonOption = False) -> None:
    """Parked deliveries and commands, with their errors (read-only)."""
    with open_store(db, create=False, readonly=True) as store:
        items = operations.parked(store)

    def human() -> None:
        if items:
            print_table(parked_table(items))
        else:
            typer.echo("nothing parked")

    emit({"parked": items}, as_json, human)


@cli.command()
def retry(item_id: str, db: DbOption, as_json: JsonOption = False) -> None:
    """Put a parked delivery (numeric id) or command (its command_id) back to work."""
    with open_store(db, create=False) as store:
        ok = operations.retry(store, item_id)
    if not ok:
        fail(f"no parked message {item_id!r}")
    emit({"id": item_id, "retried": True}, as_json, lambda: say(f"retrying {item_id}"))


@cli.command()
def skip(item_id: str, db: DbOption, as_json: JsonOption = False) -> None:
    """Drop a parked delivery or command for good (its instance then goes on)."""
    with open_store(db, create=False) as store:
        ok = operations.skip(store, item_id)
    if not ok:
        fail(f"no parked message {item_id!r}")
    emit({"id": item_id, "skipped": True}, as_json, lambda: say(f"skipped {item_id}"))


@cli.command()
def rewind(
    consumer: Annotated[str, typer.Argument(help="router, or projection:<name>")],
    position: Annotated[int, typer.Argument(help="it next reads the events after this one")],
    db: DbOption,
    as_json: JsonOption = False,
) -> None:
    """Move a log consumer's checkpoint: a projection replays the events after POSITION, the
    router re-routes them (process instances drop what they have already handled)."""
    with open_store(db, create=False) as store:
        was = operations.rewind(store, consumer, position)
    moved = f"{consumer}: checkpoint {humanize.count(was)} -> {humanize.count(position)}"
    emit({"consumer": consumer, "from": was, "to": position}, as_json, lambda: say(moved))


@cli.command()
def migrate(db: DbOption, as_json: JsonOption = False) -> None:
    """Bring an existing store's schema up to this procession's version (the read-only
    commands never migrate: they refuse an older schema and point here)."""
    with open_store(db, create=False) as store:
        version = schema_version(store)
    emit(
        {"schema_version": version},
        as_json,
        lambda: typer.echo(f"schema version {version}"),
    )


# -- batches: watch and control running batches --------------------------------------------

batches_cli = typer.Typer(
    no_args_is_help=True,
    help="List and show batches; pause, resume, cancel or throttle a running one. Each change "
    "is recorded in the log (stream procession.batch-<id>) with --by and --reason.",
)
cli.add_typer(batches_cli, name="batches")
BatchArg = Annotated[str, typer.Argument(help="the batch id")]
ReasonOption = Annotated[str, typer.Option("--reason", help="why (kept in the audit event)")]
ByOption = Annotated[str | None, typer.Option("--by", help="who (default: cli:<your OS user>)")]


def operator(by: str | None) -> str:
    if by is not None:
        return by
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "cli:unknown"


def batch_line(p: BatchProgress) -> str:
    """One batch for people: its state, counts and throttle."""
    state = f"{p.status}, paused" if p.paused else p.status
    finished = p.done + p.failed + p.skipped
    rate = f", rate {p.rate_limit}" if p.rate_limit is not None else ""
    return (
        f"{p.batch_id}: {state}, {humanize.count(finished)}/{humanize.count(p.total)} finished "
        f"({humanize.count(p.pending)} pending, {humanize.count(p.dispatched)} dispatched, "
        f"{humanize.count(p.awaiting)} awaiting, {humanize.count(p.cancelled)} cancelled), "
        f"max in flight {humanize.count(p.max_in_flight)}{rate}"
    )


def emit_batch(p: BatchProgress, as_json: bool) -> None:
    emit(msgspec.to_builtins(p), as_json, lambda: say(batch_line(p)))


@batches_cli.command("list")
def batches_list(
    db: DbOption,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The newest batches first, with their progress (read-only)."""
    with open_store(db, create=False, readonly=True) as store:
        found = operations.list_batches(store, limit)

    def human() -> None:
        echo_lines(clikit.visible(batch_line(p)) for p in found)
        if not found:
            typer.echo("no batches")

    emit({"batches": msgspec.to_builtins(found)}, as_json, human)


@batches_cli.command("show")
def batches_show(batch_id: BatchArg, db: DbOption, as_json: JsonOption = False) -> None:
    """One batch's progress and throttle (read-only)."""
    with open_store(db, create=False, readonly=True) as store:
        emit_batch(operations.batch_progress(store, batch_id), as_json)


@batches_cli.command("pause")
def batches_pause(
    batch_id: BatchArg,
    db: DbOption,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Dispatch nothing more until resumed (what was dispatched finishes)."""
    with open_store(db, create=False) as store:
        progress = operations.pause_batch(store, batch_id, by=operator(by), reason=reason)
    emit_batch(progress, as_json)


@batches_cli.command("resume")
def batches_resume(
    batch_id: BatchArg,
    db: DbOption,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Dispatch again, from where the batch was paused."""
    with open_store(db, create=False) as store:
        progress = operations.resume_batch(store, batch_id, by=operator(by), reason=reason)
    emit_batch(progress, as_json)


@batches_cli.command("cancel")
def batches_cancel(
    batch_id: BatchArg,
    db: DbOption,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel the items not dispatched yet; dispatched ones finish, then the batch completes
    as cancelled (what they started is the domain's to stop)."""
    with open_store(db, create=False) as store:
        progress = operations.cancel_batch(store, batch_id, by=operator(by), reason=reason)
    emit_batch(progress, as_json)


@batches_cli.command("throttle")
def batches_throttle(
    batch_id: BatchArg,
    db: DbOption,
    max_in_flight: Annotated[
        int | None, typer.Option("--max-in-flight", help="commands dispatched, not yet run")
    ] = None,
    rate: Annotated[
        str | None, typer.Option("--rate", help="N/PERIOD: 100/hour, 5/min, 2/s; none: no limit")
    ] = None,
    reason: ReasonOption = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a running batch's max-in-flight and/or rate limit."""
    unlimited = rate is not None and rate.strip().lower() == "none"
    limit = None if rate is None or unlimited else RateLimit.parse(rate)
    with open_store(db, create=False) as store:
        progress = operations.throttle_batch(
            store,
            batch_id,
            max_in_flight=max_in_flight,
            rate_limit=limit,
            unlimited=unlimited,
            by=operator(by),
            reason=reason,
        )
    emit_batch(progress, as_json)


def main(argv: list[str] | None = None) -> None:
    sys.exit(clikit.run(cli, "procession", argv))


if __name__ == "__main__":
    main()
