"""Store throughput against the floor (DESIGN §8): appends one at a time, batched appends,
`read_all` and a projection, each beside the same work done with no framework on the same
database.

    python bench/store.py                      # both backends, 100k batched events, median of 3
    python bench/store.py --backend sqlite --quick
    python bench/store.py --profile            # cProfile of the batched SQLite append path

Prints one JSON object on stdout (progress goes to stderr). For each backend and each
measurement: `events_per_s` (median of the runs), `floor_events_per_s` and
`ratio = events_per_s / floor_events_per_s`.

The floor inserts the very rows procession wrote (same columns, same data and metadata JSON
text, read back from procession's own table) into an `events` table made by procession's own
migration DDL, on the same engine settings: a second SQLite file with procession's pragmas
beside the first; a second schema in the same PostgreSQL database. Its batches are
procession's batches, one transaction each (sqlite3 `executemany`; psycopg `executemany` and
`COPY`, the faster of the two being the floor). The read floor is one raw `SELECT` scan of
procession's table in position order, without decoding the JSON.

The projection measurement feeds the batched events, through the real runtime path (an `App`
with one projection and nothing else, `Runtime.run_until_idle()`, pages of the backend's
default `log_page` unless `--log-page`), to a projection whose one handler writes one row an
event (`tx.write` INSERT of stream id, version, position and the event's JSON) into its own
table. Its floor, in the same database, reads the log with the same raw paged `SELECT`
(`position > last ... LIMIT page`) and inserts the same rows into an identical table with
`executemany`, one transaction a page, no checkpoint, no decoding; both tables are checked
to hold the same rows.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import sqlite3
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PG_URL,
    command_line,
    git_state,
    load_avg,
    log,
    machine_info,
    now_iso,
    peak_rss_mb,
    pg_info,
    pg_schema,
    rate_summary,
    sqlite_connect,
    sqlite_url,
    temp_dir,
    timed,
)
from procession import Limits, Session
from procession.app import App
from procession.ids import new_id
from procession.messages import Event, MessageRegistry
from procession.projection import EventInfo, Projection
from procession.runtime.runtime import Runtime
from procession.store import NO_STREAM, Store, open_store
from procession.store.postgres import PostgresCoordination
from procession.store.queries import migrations
from procession.store.sqlite import SQLiteCoordination

COLUMNS = "stream_id, version, type, schema_version, data, metadata"
READ_SQL = (
    "SELECT position, stream_id, version, type, schema_version, data, metadata "
    "FROM events ORDER BY position"
)
PAGE_SQL = (  # procession's own `read_all` query, as the projection floor's page read
    "SELECT position, stream_id, version, type, schema_version, data, metadata "
    "FROM events WHERE position > {p} ORDER BY position LIMIT {p}"
)
RM_TABLE, RM_FLOOR_TABLE = "bench_rm", "bench_rm_floor"
RM_COLUMNS = "stream_id, version, position, data"
Row = tuple[Any, ...]


class FundsDeposited(Event, frozen=True, kw_only=True):
    """A typical small event: ~145 bytes of JSON data (its metadata: ~180)."""

    account_id: str
    amount: int
    currency: str
    reference: str


def registry() -> MessageRegistry:
    reg = MessageRegistry()
    reg.register(FundsDeposited)
    return reg


@dataclass(frozen=True)
class Workload:
    """`events` events in streams of `per_stream`, appended `batch_size` events a transaction."""

    events: int
    batch_size: int
    per_stream: int

    def streams(self) -> list[tuple[str, list[FundsDeposited]]]:
        out = []
        for first in range(0, self.events, self.per_stream):
            stream_id = f"account-{new_id()}"
            events = [
                FundsDeposited(
                    account_id=stream_id,
                    amount=1000 + i,
                    currency="EUR",
                    reference=f"transfer {i:08d} for invoice INV-{i % 9973:05d}",
                )
                for i in range(first, min(first + self.per_stream, self.events))
            ]
            out.append((stream_id, events))
        return out

    def batches(self) -> list[list[tuple[str, list[FundsDeposited], int]]]:
        """append_batch arguments: whole streams, about `batch_size` events each."""
        batches: list[list[tuple[str, list[FundsDeposited], int]]] = []
        current: list[tuple[str, list[FundsDeposited], int]] = []
        size = 0
        for stream_id, events in self.streams():
            current.append((stream_id, events, NO_STREAM))
            size += len(events)
            if size >= self.batch_size:
                batches.append(current)
                current, size = [], 0
        if current:
            batches.append(current)
        return batches


def rm_ddl(table: str) -> str:
    """The read model: one row an event (keyed by stream and version, so --per-stream works)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (stream_id TEXT NOT NULL, version INTEGER NOT NULL, "
        "position BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (stream_id, version))"
    )


_encode = msgspec.json.Encoder().encode  # the encoder the registry stores events with


class Deposits(Projection):
    """One handler, one row an event: the data column is the event's JSON, as stored."""

    name = RM_TABLE

    def __init__(self) -> None:
        super().__init__()
        self.on(FundsDeposited, self.deposited)

    def setup(self, session: Session) -> None:
        session.sql(rm_ddl(RM_TABLE))

    def reset(self, session: Session) -> None:
        session.sql(f"DELETE FROM {RM_TABLE}")

    def deposited(self, session: Session, event: FundsDeposited, info: EventInfo) -> None:
        session.write(
            f"INSERT INTO {RM_TABLE} ({RM_COLUMNS}) "
            "VALUES (:stream_id, :version, :position, :data)",
            {
                "stream_id": info.stream_id,
                "version": info.version,
                "position": info.position,
                "data": _encode(event).decode(),
            },
        )


def events_ddl(backend: str) -> str:
    """procession's own CREATE TABLE events, from its first migration."""
    script = dict(migrations(backend))[1]
    found = re.search(r"CREATE TABLE events \(.*?\n\);", script, re.DOTALL)
    if found is None:
        raise RuntimeError(f"no CREATE TABLE events in the {backend} migration")
    return found.group(0)


def chunks(rows: list[Row], sizes: list[int]) -> list[list[Row]]:
    out, at = [], 0
    for size in sizes:
        out.append(rows[at : at + size])
        at += size
    return out


# -- one backend -------------------------------------------------------------------------------


class Target:
    """A backend under test: fresh procession stores, fresh floor tables, raw access."""

    name: str

    def store(self) -> AbstractContextManager[Store]:
        raise NotImplementedError

    def stored_rows(self, store: Store) -> list[Row]:
        """procession's rows, in position order, without the position (the floor's input)."""
        raise NotImplementedError

    def raw_scan(self, store: Store) -> int:
        raise NotImplementedError

    def default_limits(self) -> Limits:
        """The Limits the Runtime picks for this backend by default."""
        raise NotImplementedError

    def query(self, store: Store, sql: str) -> list[Row]:
        """A raw read-only query on procession's database."""
        raise NotImplementedError

    def projection_floor(self, store: Store, page: int) -> float:
        """Raw paged SELECT + executemany into RM_FLOOR_TABLE, a transaction a page; seconds."""
        raise NotImplementedError

    def floors(self) -> dict[str, Callable[[list[list[Row]]], float]]:
        """Raw insert methods: each makes a fresh table, inserts the batches, returns seconds."""
        raise NotImplementedError


class SQLiteTarget(Target):
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ddl = events_ddl("sqlite")
        self.count = 0

    def _path(self, kind: str) -> Path:
        self.count += 1
        return self.root / f"{kind}-{self.count}.db"

    @contextmanager
    def store(self) -> Iterator[Store]:
        path = self._path("procession")
        store = open_store(sqlite_url(path), registry())
        try:
            yield store
        finally:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def _raw(self, store: Store) -> sqlite3.Connection:
        return sqlite_connect(Path(store.url[len("sqlite:///") :]))

    def stored_rows(self, store: Store) -> list[Row]:
        conn = self._raw(store)
        try:
            return conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY position").fetchall()
        finally:
            conn.close()

    def raw_scan(self, store: Store) -> int:
        conn = self._raw(store)
        try:
            conn.execute("BEGIN")
            n = sum(1 for _ in conn.execute(READ_SQL))
            conn.execute("COMMIT")
            return n
        finally:
            conn.close()

    def default_limits(self) -> Limits:
        return SQLiteCoordination.limits

    def query(self, store: Store, sql: str) -> list[Row]:
        conn = self._raw(store)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def projection_floor(self, store: Store, page: int) -> float:
        conn = self._raw(store)
        select = PAGE_SQL.format(p="?")
        insert = f"INSERT INTO {RM_FLOOR_TABLE} ({RM_COLUMNS}) VALUES (?, ?, ?, ?)"
        conn.execute(rm_ddl(RM_FLOOR_TABLE))

        def run() -> None:
            last = 0
            while True:  # until an empty page, as the runtime does
                conn.execute("BEGIN IMMEDIATE")
                rows = conn.execute(select, (last, page)).fetchall()
                if rows:
                    conn.executemany(insert, [(r[1], r[2], r[0], r[5]) for r in rows])
                    last = rows[-1][0]
                conn.execute("COMMIT")
                if not rows:
                    return

        try:
            return timed(run)
        finally:
            conn.close()

    def floors(self) -> dict[str, Callable[[list[list[Row]]], float]]:
        return {"executemany": self._floor}

    def _floor(self, batches: list[list[Row]]) -> float:
        path = self._path("floor")
        conn = sqlite_connect(path)
        conn.execute(self.ddl)
        insert = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"

        def run() -> None:
            for batch in batches:
                conn.execute("BEGIN IMMEDIATE")
                if len(batch) == 1:
                    conn.execute(insert, batch[0])
                else:
                    conn.executemany(insert, batch)
                conn.execute("COMMIT")

        try:
            seconds = timed(run)
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == sum(
                map(len, batches)
            )
            return seconds
        finally:
            conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresTarget(Target):
    name = "postgres"

    def __init__(self) -> None:
        self.ddl = events_ddl("postgres")

    @contextmanager
    def store(self) -> Iterator[Store]:
        with pg_schema("bench_store") as url:
            store = open_store(url, registry())
            try:
                yield store
            finally:
                store.close()

    def stored_rows(self, store: Store) -> list[Row]:
        import psycopg

        with psycopg.connect(store.url) as conn:
            return conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY position").fetchall()

    def raw_scan(self, store: Store) -> int:
        import psycopg

        with psycopg.connect(store.url) as conn, conn.cursor() as cur:
            cur.execute(READ_SQL)
            return sum(1 for _ in cur)

    def default_limits(self) -> Limits:
        return PostgresCoordination.limits

    def query(self, store: Store, sql: str) -> list[Row]:
        import psycopg

        with psycopg.connect(store.url) as conn:
            return conn.execute(sql).fetchall()

    def projection_floor(self, store: Store, page: int) -> float:
        import psycopg

        select = PAGE_SQL.format(p="%s")
        insert = f"INSERT INTO {RM_FLOOR_TABLE} ({RM_COLUMNS}) VALUES (%s, %s, %s, %s)"
        with psycopg.connect(store.url) as conn:
            conn.execute(rm_ddl(RM_FLOOR_TABLE))
            conn.commit()

            def run() -> None:
                last = 0
                while True:  # until an empty page, as the runtime does
                    with conn.cursor() as cur:
                        cur.execute(select, (last, page))
                        rows = cur.fetchall()
                        if rows:
                            cur.executemany(insert, [(r[1], r[2], r[0], r[5]) for r in rows])
                            last = rows[-1][0]
                    conn.commit()
                    if not rows:
                        return

            return timed(run)

    def floors(self) -> dict[str, Callable[[list[list[Row]]], float]]:
        return {"executemany": self._executemany, "copy": self._copy}

    def _floor(self, batches: list[list[Row]], insert: Callable[[Any, list[Row]], None]) -> float:
        import psycopg

        with pg_schema("bench_floor") as url, psycopg.connect(url) as conn:
            conn.execute(self.ddl)
            conn.commit()

            def run() -> None:
                for batch in batches:
                    with conn.cursor() as cur:
                        insert(cur, batch)
                    conn.commit()

            seconds = timed(run)
            row = conn.execute("SELECT count(*) FROM events").fetchone()
            assert row is not None and row[0] == sum(map(len, batches))
            conn.rollback()
            return seconds

    def _executemany(self, batches: list[list[Row]]) -> float:
        sql = f"INSERT INTO events ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"

        def insert(cur: Any, batch: list[Row]) -> None:
            if len(batch) == 1:
                cur.execute(sql, batch[0])
            else:
                cur.executemany(sql, batch)

        return self._floor(batches, insert)

    def _copy(self, batches: list[list[Row]]) -> float:
        def insert(cur: Any, batch: list[Row]) -> None:
            with cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)

        return self._floor(batches, insert)


# -- the measurements --------------------------------------------------------------------------


def with_floor(
    target: Target, count: int, runs: list[float], floor_runs: dict[str, list[float]]
) -> dict[str, Any]:
    result = rate_summary(count, runs)
    best_name, best = "", 0.0
    for name, seconds in floor_runs.items():
        rate = statistics.median(count / s for s in seconds)
        if rate > best:
            best_name, best = name, rate
    result["floor_events_per_s"] = round(best)
    result["floor_method"] = best_name
    result["floor_runs_events_per_s"] = {
        name: [round(count / s) for s in seconds] for name, seconds in floor_runs.items()
    }
    result["ratio"] = round(result["events_per_s"] / best, 3)
    return result


def bench_single(target: Target, work: Workload, repeats: int) -> dict[str, Any]:
    """Store.append, one event per call and transaction, with a real expected version."""
    streams = work.streams()
    plan = []  # (stream_id, [event], expected_version)
    for stream_id, events in streams:
        plan.extend((stream_id, [event], v) for v, event in enumerate(events))
    runs: list[float] = []
    floor_runs: dict[str, list[float]] = {}
    rows: list[Row] = []
    for r in range(repeats):
        with target.store() as store:

            def run(store: Store = store) -> None:
                for stream_id, events, expected in plan:
                    store.append(stream_id, events, expected)

            runs.append(timed(run))
            if not rows:
                rows = target.stored_rows(store)
        singles = [[row] for row in rows]
        for name, floor in target.floors().items():
            floor_runs.setdefault(name, []).append(floor(singles))
        log(f"  {target.name} append_single run {r + 1}: {len(plan) / runs[-1]:,.0f} ev/s")
    return with_floor(target, len(plan), runs, floor_runs)


def project(store: Store, limits: Limits) -> float:
    """Seconds for a fresh Runtime (an App with only the Deposits projection) to catch up."""
    app = App("bench")
    app.register(FundsDeposited)
    app.projection(Deposits())
    runtime = Runtime(app, store, limits=limits)  # creates the read-model table, untimed
    return timed(runtime.run_until_idle)


def check_projection(target: Target, store: Store, count: int) -> None:
    """The projection and its floor wrote the same `count` rows."""
    same = target.query(
        store,
        f"SELECT count(*) FROM {RM_TABLE} a JOIN {RM_FLOOR_TABLE} b ON a.stream_id = b.stream_id "
        "AND a.version = b.version AND a.position = b.position AND a.data = b.data",
    )[0][0]
    rows = [
        target.query(store, f"SELECT count(*) FROM {t}")[0][0] for t in (RM_TABLE, RM_FLOOR_TABLE)
    ]
    assert rows == [count, count] and same == count, (rows, same, count)


def bench_batched(
    target: Target, work: Workload, repeats: int, log_page: int | None = None
) -> dict[str, dict[str, Any]]:
    """Store.append_batch (whole streams, ~batch_size events a transaction), then read_all,
    then a projection catching up with those events through the runtime."""
    batches = work.batches()
    sizes = [sum(len(events) for _, events, _ in batch) for batch in batches]
    count = sum(sizes)
    runs: list[float] = []
    floor_runs: dict[str, list[float]] = {}
    read_runs: list[float] = []
    scan_runs: list[float] = []
    limits = target.default_limits()
    if log_page:
        limits = replace(limits, log_page=log_page)
    project_runs: list[float] = []
    project_floor_runs: list[float] = []
    rows: list[Row] = []
    for r in range(repeats):
        with target.store() as store:

            def run(store: Store = store) -> None:
                for batch in batches:
                    store.append_batch(batch)

            def read(store: Store = store) -> None:
                n = sum(1 for _ in store.read_all())
                assert n == count, (n, count)

            def scan(store: Store = store) -> None:
                assert target.raw_scan(store) == count

            runs.append(timed(run))
            read_runs.append(timed(read))
            scan_runs.append(timed(scan))
            if not rows:
                rows = target.stored_rows(store)
            # procession and its floor take turns going first (WAL growth, checkpoints)
            if r % 2 == 0:
                project_runs.append(project(store, limits))
                project_floor_runs.append(target.projection_floor(store, limits.log_page))
            else:
                project_floor_runs.append(target.projection_floor(store, limits.log_page))
                project_runs.append(project(store, limits))
            check_projection(target, store, count)
        for name, floor in target.floors().items():
            floor_runs.setdefault(name, []).append(floor(chunks(rows, sizes)))
        log(
            f"  {target.name} run {r + 1}: append_batched {count / runs[-1]:,.0f} ev/s, "
            f"read_all {count / read_runs[-1]:,.0f} ev/s, "
            f"projection {count / project_runs[-1]:,.0f} ev/s "
            f"(floor {count / project_floor_runs[-1]:,.0f})"
        )
    appended = with_floor(target, count, runs, floor_runs)
    appended["events_per_transaction"] = round(statistics.mean(sizes))
    appended["events_per_stream"] = work.per_stream
    read = with_floor(target, count, read_runs, {"select_scan": scan_runs})
    read["page_size"] = 1000
    projected = with_floor(target, count, project_runs, {"select_executemany": project_floor_runs})
    projected["page_size"] = limits.log_page
    projected["path"] = "Runtime.run_until_idle"
    return {"append_batched": appended, "read_all": read, "projection": projected}


def bench_backend(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    log(f"{target.name}:")
    single = Workload(args.single_events, 1, args.per_stream)
    batched = Workload(args.events, args.batch_size, args.per_stream)
    result = {"append_single": bench_single(target, single, args.repeats)}
    result.update(bench_batched(target, batched, args.repeats, args.log_page))
    return result


# -- profiling -----------------------------------------------------------------------------------


def profile_batched(args: argparse.Namespace) -> dict[str, Any]:
    """One batched SQLite append run under cProfile: where each event's microseconds go."""
    work = Workload(args.events, args.batch_size, args.per_stream)
    batches = work.batches()
    with temp_dir() as root:
        target = SQLiteTarget(root)
        with target.store() as store:
            profiler = cProfile.Profile()
            profiler.enable()
            for batch in batches:
                store.append_batch(batch)
            profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(25)
    per = 1e6 / work.events
    top = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in sorted(
        raw.items(), key=lambda item: -item[1][2]
    )[:25]:
        top.append(
            {
                "function": f"{Path(file).name}:{line}({func})",
                "calls": ncalls,
                "self_us_per_event": round(tottime * per, 2),
                "cumulative_us_per_event": round(cumtime * per, 2),
            }
        )
    total = sum(v[2] for v in raw.values())
    return {"events": work.events, "total_us_per_event": round(total * per, 2), "top": top}


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="batched events per run (default 100000)")
    parser.add_argument("--single-events", type=int, help="one-per-transaction events (2000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="events a transaction")
    parser.add_argument("--per-stream", type=int, default=1, help="events per stream per append")
    parser.add_argument(
        "--log-page", type=int, help="projection page size (default: the runtime's per backend)"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeats", type=int, help="runs per figure, median reported (3)")
    parser.add_argument("--quick", action="store_true", help="10k/500 events, one run")
    parser.add_argument(
        "--profile", action="store_true", help="profile the batched SQLite append only"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.events = args.events or (10_000 if quick else 100_000)
    args.single_events = args.single_events or (500 if quick else 2_000)
    args.repeats = args.repeats or (1 if quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: dict[str, Any] = {
        "bench": "store",
        "date": now_iso(),
        "command": command_line(),
        "git": git_state(),
        "machine": machine_info(PG_URL if args.backend != "sqlite" else None),
        "params": {
            "events": args.events,
            "single_events": args.single_events,
            "batch_size": args.batch_size,
            "per_stream": args.per_stream,
            "log_page": args.log_page,
            "repeats": args.repeats,
        },
    }
    if args.profile:
        out["profile_sqlite_append_batched"] = profile_batched(args)
    else:
        if args.backend in ("sqlite", "both"):
            with temp_dir() as root:
                out["sqlite"] = bench_backend(SQLiteTarget(root), args)
        if args.backend in ("postgres", "both"):
            if pg_info() is None:
                if args.backend == "postgres":
                    log(f"no PostgreSQL at {PG_URL} (set PROCESSION_BENCH_PG)")
                    return 2
                out["postgres"] = {"skipped": f"no PostgreSQL at {PG_URL}"}
            else:
                out["postgres"] = bench_backend(PostgresTarget(), args)
    out["load_avg_at_end"] = load_avg()
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
