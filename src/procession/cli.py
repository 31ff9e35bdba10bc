"""`procession`: run workers and inspect a store from the shell.

    procession worker --app package.module:app --db postgresql://... [--clock virtual]
    procession status --db URL [--json]
    procession parked --db URL [--json]        procession retry ID / skip ID --db URL
    procession rewind CONSUMER POSITION --db URL
    procession migrate --db URL

`status` and `parked` only look: they open the store read-only (a read-only file will do)
and never create or migrate anything. `retry`, `skip`, `rewind` and `migrate` change an
existing store and never create one; a worker creates its tables in an empty PostgreSQL
database, never a SQLite file. Errors are printed as one line (no traceback) with a
non-zero exit code.
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from procession import clikit
from procession.app import App
from procession.errors import ProcessionError, StoreUnavailable
from procession.policy import describe
from procession.runtime import operations
from procession.runtime.clock import Clock, SystemClock, VirtualClock
from procession.runtime.runtime import Runtime, retry_delay
from procession.store import Store, open_store, schema_version

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
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

    def unreachable(exc: Exception) -> bool:
        """The database refused or dropped us (not: a bad URL, schema or app)."""
        from procession.store.postgres import connection_fault, misconfigured  # psycopg: lazily

        if not reconnects or misconfigured(exc):
            return False
        return isinstance(exc, StoreUnavailable) or connection_fault(exc)

    def retrying(what: str, action: Callable[[], Any]) -> Any:
        """`action()`, tried again while the database cannot be reached; None if stopped."""
        failures = 0
        while not stop.is_set():
            began = time.monotonic()
            try:
                return action()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                # in a row: a run that went on for a while before it failed starts afresh
                failures = 1 if time.monotonic() - began > 1.0 else failures + 1
                delay = retry_delay(failures)  # as run_forever does
                logging.getLogger("procession").error(
                    "worker %s failed (%d in a row), retrying in %.2f s: %s",
                    what,
                    failures,
                    delay,
                    describe(exc),
                )
                stop.wait(delay)
        return None

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
        typer.echo(f"worker started on {store.backend.name}", err=True)
        try:
            if until_idle:
                retrying("run", runtime.run_until_idle)
            else:
                runtime.run_forever(stop)
        finally:
            store.close()
    typer.echo("worker stopped", err=True)
    if as_json:
        emit({"stopped": True, "seconds": round(time.monotonic() - started, 3)}, True, print)


@cli.command()
def status(db: DbOption, as_json: JsonOption = False) -> None:
    """Log head, checkpoints, queued work and parked messages (read-only)."""
    with open_store(db, create=False, readonly=True) as store:
        data = operations.status(store)
    emit(data, as_json, lambda: echo_lines(f"{k}: {v}" for k, v in data.items()))


@cli.command()
def parked(db: DbOption, as_json: JsonOption = False) -> None:
    """Parked deliveries and commands, with their errors (read-only)."""
    with open_store(db, create=False, readonly=True) as store:
        items = operations.parked(store)
    emit({"parked": items}, as_json, lambda: echo_lines(json.dumps(i) for i in items))


@cli.command()
def retry(item_id: str, db: DbOption, as_json: JsonOption = False) -> None:
    """Put a parked delivery (numeric id) or command (its command_id) back to work."""
    with open_store(db, create=False) as store:
        ok = operations.retry(store, item_id)
    if not ok:
        fail(f"no parked message {item_id!r}")
    emit({"id": item_id, "retried": True}, as_json, lambda: typer.echo(f"retrying {item_id}"))


@cli.command()
def skip(item_id: str, db: DbOption, as_json: JsonOption = False) -> None:
    """Drop a parked delivery or command for good (its instance then goes on)."""
    with open_store(db, create=False) as store:
        ok = operations.skip(store, item_id)
    if not ok:
        fail(f"no parked message {item_id!r}")
    emit({"id": item_id, "skipped": True}, as_json, lambda: typer.echo(f"skipped {item_id}"))


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
    emit(
        {"consumer": consumer, "from": was, "to": position},
        as_json,
        lambda: typer.echo(f"{consumer}: {was} -> {position}"),
    )


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


def main(argv: list[str] | None = None) -> None:
    sys.exit(clikit.run(cli, "procession", argv))


if __name__ == "__main__":
    main()
