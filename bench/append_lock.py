"""Would several PostgreSQL workers append faster without the events table lock?

    python bench/append_lock.py                      # 1, 2, 4 appenders; 20,000 events each

The store keeps its log gap-free for readers by appending under `LOCK TABLE events IN
EXCLUSIVE MODE`: positions commit in order, so a reader never skips a position that commits
later. The usual alternative (as in Marten or Postgres-based outboxes) stamps each row with
its transaction id (`xid8`, `pg_current_xact_id()`) and lets readers stop below the oldest
transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`): appenders no longer
wait for each other. This bench measures the ceiling of that gain: K processes appending
transactions of `--batch` events (the size of a stage's appends) to the same table, with the
lock and without it (the xid8 column and its default included, the reader's side not).
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, log, pg_schema
from procession import open_store

INSERT = (
    "INSERT INTO events (stream_id, version, type, schema_version, data, metadata)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
DATA = '{"contract_id":"k00000001","customer_id":"bench","change_no":1}'
META = (
    '{"message_id":"01a2363a-e908-7000-b61f-ddca097577cf","correlation_id":'
    '"01a2363a-e908-7000-b61f-ddca097577cf","causation_id":null,'
    '"occurred_at":"2030-01-01T00:00:00+00:00"}'
)


def appender(url: str, worker: int, events: int, batch: int, lock: bool, start: Any) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        start.wait()
        for first in range(0, events, batch):
            with conn.transaction(), conn.cursor() as cur:
                if lock:
                    cur.execute("LOCK TABLE events IN EXCLUSIVE MODE")
                rows = [
                    (f"w{worker}-s{i}", 1, "CustomerContractRevoked", 1, DATA, META)
                    for i in range(first, min(events, first + batch))
                ]
                cur.executemany(INSERT, rows)


def measure(appenders: int, events: int, batch: int, lock: bool) -> dict[str, Any]:
    import psycopg

    with pg_schema("bench_append") as url:
        open_store(url).close()  # procession's own schema: its events table and indexes
        if not lock:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id()"
                )
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(appenders + 1)
        procs = [
            ctx.Process(target=appender, args=(url, w, events, batch, lock, start))
            for w in range(appenders)
        ]
        for p in procs:
            p.start()
        start.wait()
        began = time.perf_counter()
        for p in procs:
            p.join()
        seconds = time.perf_counter() - began
        if any(p.exitcode for p in procs):
            raise SystemExit("an appender failed")
    total = appenders * events
    result = {
        "appenders": appenders,
        "lock": "table lock" if lock else "none (xid8 column)",
        "events": total,
        "seconds": round(seconds, 2),
        "events_per_s": round(total / seconds),
    }
    log(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appenders", default="1,2,4")
    parser.add_argument("--events", type=int, default=20_000, help="per appender")
    parser.add_argument("--batch", type=int, default=200, help="events per transaction")
    args = parser.parse_args()
    out = header("append_lock")
    out["runs"] = [
        measure(k, args.events, args.batch, lock)
        for k in (int(a) for a in args.appenders.split(","))
        for lock in (True, False)
    ]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
