"""A SQLite store's WAL stays bounded relative to the database: a run needs about twice the
database's size on disk (at least 64 MiB), not the 400 MB the WAL grew to before."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from procession import open_store
from procession.store.sqlite import SQLiteBackend

MiB = 1 << 20
DEMO = [sys.executable, "-m", "credit_contracts.cli", "demo", "--contracts", "3000"]


def test_the_wal_of_a_3000_contract_demo_stays_within_twice_the_database(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo.db"
    wal = Path(f"{db}-wal")
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            with contextlib.suppress(OSError):
                peak = max(peak, wal.stat().st_size)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = subprocess.run(
            [*DEMO, "--db", f"sqlite:///{db}", "--json"],
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        done.set()
        sampler.join()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["matches_expected"] is True
    size = db.stat().st_size
    bound = max(64 * MiB, 2 * size)
    assert 0 < peak < bound, (
        f"the WAL reached {peak / MiB:.1f} MiB, the database is {size / MiB:.1f}"
    )


def test_maintenance_gives_the_wal_back_once_the_store_is_quiet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    wal = tmp_path / "s.db-wal"
    with open_store(url) as store:
        backend = store.backend
        assert isinstance(backend, SQLiteBackend)
        limit = backend.conn.execute("PRAGMA journal_size_limit").fetchone()[0]
        assert limit == 64 * MiB
        window = backend.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert window * 4096 >= 48 * MiB  # follows the database's size, at least 48 MiB
        with store.transaction() as tx:
            tx.sql("CREATE TABLE filler (x BLOB)")
            for _ in range(200):
                tx.sql("INSERT INTO filler VALUES (randomblob(16000))")
        assert wal.stat().st_size > MiB
        coordination = backend.coordination
        coordination.maintain()  # the first look: the WAL was just written
        coordination.maintain()  # nothing written since: checkpointed and truncated
        assert wal.stat().st_size == 0
        with store.transaction() as tx:  # and the store goes on
            assert tx.sql("SELECT count(*) FROM filler")[0][0] == 200
    assert not os.path.exists(wal)
