"""A store opened read-only (`open_store(url, readonly=True)`) reads and never changes anything.

On both backends: it reads what a writer wrote (the log, the work tables through the operator
views, batch progress), every write is refused with `ReadOnlyStore` and leaves the database as
it was, and it neither creates nor migrates a store. On SQLite the file is opened `mode=ro`
and no file is created beside it (no -wal or -shm): a file or a directory without write
permission can be read. Root ignores permission bits, so those tests run their reader in a
child process as `nobody` when the tests run as root.
"""

from __future__ import annotations

import os
import pickle
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import procession.store
import procession.store.sqlite  # loaded before a child process drops its privileges
from contract.schema_dump import apply_migrations, migration_files
from contract.support import (
    deposits,
    is_sqlite,
    make_registry,
    raw_execute,
    sqlite_path,
)
from procession import (
    NO_STREAM,
    ProcessionError,
    ReadOnlyStore,
    RetryPolicy,
    Runtime,
    SchemaError,
    Store,
    StoreUnavailable,
    VirtualClock,
    open_store,
)
from procession.runtime import batches, operations
from tests.engine.test_failures import Fragile
from tests.support.toy import OpenAccount, ReviewGroup, build_app

BATCH = "review-g-1"


# -- a store with something of everything in it ------------------------------------------------


def write_scenario(url: str) -> dict[str, Any]:
    """Events, a parked delivery, timers, a running batch and a virtual clock, written by a
    runtime; returns what a reader should see, read through the writer's own store."""
    app = build_app()
    fragile = Fragile()
    fragile.retry_policy = RetryPolicy(max_attempts=1)
    app.process(fragile)
    with open_store(url) as store:
        rt = Runtime(app, store, VirtualClock(store=store))
        for i in range(5):
            rt.send(OpenAccount(account_id=f"a{i}", group="g"))
        rt.send(OpenAccount(account_id="bad-1", group="g"))
        rt.run_until_idle()
        rt.send(ReviewGroup(group="g"))
        for _ in range(3):
            rt.run_once()
        return seen_by(store)


def seen_by(store: Store) -> dict[str, Any]:
    with store.transaction(write=False) as tx:
        progress = batches.progress(tx, BATCH)
    return {
        "events": list(store.read_all()),
        "stream": store.read_stream("Account-a1"),
        "head": store.head_position(),
        "status": operations.status(store),
        "parked": operations.parked(store),
        "progress": progress,
        "clock_kind": store.clock_kind,
        "now": store.now(),
    }


def snapshot(url: str) -> Any:
    """What the database holds: every file in a SQLite store's directory (bytes and
    modification time: no file appears, none changes); every row of every table of a
    PostgreSQL schema."""
    if is_sqlite(url):
        folder = Path(sqlite_path(url)).parent
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    tables = raw_execute(
        url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    return {
        table: sorted(repr(row) for row in raw_execute(url, f"SELECT * FROM {table}"))
        for (table,) in tables
    }


def latest(url: str) -> int:
    return migration_files("sqlite" if is_sqlite(url) else "postgres")[-1][0]


# -- reading ----------------------------------------------------------------------------------


def test_a_read_only_store_reads_what_a_writer_wrote(store_url: str) -> None:
    expected = write_scenario(store_url)
    assert expected["parked"] and expected["progress"] is not None, "the scenario has both"
    assert expected["status"]["timers"] > 0 and expected["clock_kind"] == "virtual"
    before = snapshot(store_url)
    with open_store(store_url, readonly=True) as store:
        assert store.readonly
        assert seen_by(store) == expected
    assert snapshot(store_url) == before


def test_a_read_only_store_sees_what_is_committed_after_it_opened(store_url: str) -> None:
    registry = make_registry()
    with open_store(store_url, registry) as writer:
        writer.append("acc-1", deposits(1))
        assert not writer.readonly
        with open_store(store_url, registry, readonly=True) as reader:
            assert reader.head_position() == 1
            writer.append("acc-1", deposits(2, 3))
            assert reader.head_position() == 3
            assert [e.data["amount"] for e in reader.read_stream("acc-1")] == [1, 2, 3]


def test_a_read_only_store_opened_before_a_writer_sees_its_commits(store_url: str) -> None:
    """On SQLite the reader first reads the file as it is (no writer has it open) and then,
    once a writer has opened it, through the writer's -wal and -shm."""
    registry = make_registry()
    with open_store(store_url, registry) as first:
        first.append("acc-1", deposits(1))
    with open_store(store_url, registry, readonly=True) as reader:
        assert [e.data["amount"] for e in reader.read_all()] == [1]
        with open_store(store_url, registry) as writer:
            writer.append("acc-1", deposits(2))
            assert [e.data["amount"] for e in reader.read_all()] == [1, 2]
            writer.append("acc-1", deposits(3))
        assert [e.data["amount"] for e in reader.read_stream("acc-1")] == [1, 2, 3]


def test_a_sqlite_file_written_during_a_read_fails_that_read(tmp_path: Path) -> None:
    """No writer had the store open, so the reader read the file as it is; a writer came,
    wrote and closed (copying its WAL into the file) while a read transaction was open:
    that transaction's reads may be torn, so it fails and says to run again. The next one
    reads the new file."""
    url = f"sqlite:///{tmp_path}/store.db"
    registry = make_registry()
    with open_store(url, registry) as first:
        first.append("acc-1", deposits(1))
    os.utime(sqlite_path(url), ns=(0, 0))  # a write now changes the time, however fine-grained
    torn = pytest.raises(StoreUnavailable, match=r"was written while it was being read")
    with open_store(url, registry, readonly=True) as reader:
        with torn, reader.transaction(write=False) as tx:
            assert tx.head_position() == 1
            with open_store(url, registry) as writer:
                writer.append("acc-1", deposits(2))
        assert reader.head_position() == 2


def test_opening_a_sqlite_store_again_keeps_the_locks_of_the_one_open(tmp_path: Path) -> None:
    """Looking at a file with the process's own open() and close() would release every lock
    the process holds on it (POSIX), those of the store already open included: a writer in
    another process would then take the store for unused, copy its WAL into the file and
    delete the -wal and -shm under the open store. Opening goes through SQLite only."""
    url = f"sqlite:///{tmp_path}/store.db"
    registry = make_registry()
    with open_store(url, registry) as held:
        held.append("acc-1", deposits(1))
        with held.transaction(write=False) as tx:
            tx.head_position()
        for options in ({}, {"create": False}, {"readonly": True}):
            open_store(url, registry, **options).close()
        write_elsewhere = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
            " c.execute(\"INSERT INTO procession_meta VALUES ('elsewhere', 'x')\"); c.close()"
        )
        subprocess.run([sys.executable, "-c", write_elsewhere, sqlite_path(url)], check=True)
        assert (tmp_path / "store.db-wal").exists(), "the other writer saw the store in use"
        held.append("acc-1", deposits(2))
        assert [e.data["amount"] for e in held.read_all()] == [1, 2]


# -- writing is refused -----------------------------------------------------------------------


def _in_tx(action: Callable[[procession.store.Tx], object]) -> Callable[[Store], object]:
    def run(store: Store) -> object:
        with store.transaction() as tx:
            return action(tx)

    return run


def _session_write(store: Store) -> None:
    with store.session() as session:  # a deferred write, sent at commit
        session.write(
            "INSERT INTO procession_meta (key, value) VALUES (:k, :v)", {"k": "k", "v": "v"}
        )


WRITES: dict[str, Callable[[Store], object]] = {
    "append": lambda store: store.append("acc-9", deposits(9)),
    "append_batch": lambda store: store.append_batch([("acc-9", deposits(9), NO_STREAM)]),
    "set_meta": _in_tx(lambda tx: tx.set_meta("schema", "mine")),
    "insert": _in_tx(lambda tx: tx.sql("INSERT INTO procession_meta VALUES ('k', 'v')")),
    "delete": _in_tx(lambda tx: tx.sql("DELETE FROM events")),
    "create table": _in_tx(lambda tx: tx.sql("CREATE TABLE intruder (id INTEGER)")),
    "deferred write": _session_write,
    "operator retry": lambda store: operations.retry(store, "1"),
    "operator skip": lambda store: operations.skip(store, "1"),
    "operator rewind": lambda store: operations.rewind(store, "router", 0),
}


def test_every_write_through_a_read_only_store_is_refused_and_changes_nothing(
    store_url: str,
) -> None:
    write_scenario(store_url)
    before = snapshot(store_url)
    with open_store(store_url, make_registry(), readonly=True) as store:
        assert [p["id"] for p in operations.parked(store)] == ["1"], "retry and skip find it"
        head = store.head_position()
        for name, write in WRITES.items():
            with pytest.raises(ReadOnlyStore, match="opened read-only") as caught:
                write(store)
            assert isinstance(caught.value, ProcessionError), name
            assert "readonly=True" in str(caught.value), "it says why"
            assert store.head_position() == head, f"{name}: the store still reads"
    assert snapshot(store_url) == before


def test_a_read_write_store_is_not_read_only(store_url: str) -> None:
    with open_store(store_url, make_registry()) as store:
        assert not store.readonly
        store.append("acc-1", deposits(1))


# -- nothing is created or migrated -----------------------------------------------------------


def test_a_read_only_open_creates_no_store(store_url: str) -> None:
    """SQLite: no file; PostgreSQL: no table in the (empty) schema."""
    with pytest.raises(StoreUnavailable) as caught:
        open_store(store_url, readonly=True)
    if is_sqlite(store_url):
        assert str(caught.value) == f"no store at {sqlite_path(store_url)}"
        assert not Path(sqlite_path(store_url)).exists()
        assert list(Path(sqlite_path(store_url)).parent.iterdir()) == []
    else:
        assert "no procession store in postgresql://" in str(caught.value)
        assert snapshot(store_url) == {}


def test_a_read_only_open_of_an_older_schema_is_refused_and_migrates_nothing(
    store_url: str,
) -> None:
    older = latest(store_url) - 1
    apply_migrations(store_url, older)
    before = snapshot(store_url)
    with pytest.raises(SchemaError) as caught:
        open_store(store_url, readonly=True)
    message = str(caught.value)
    assert f"schema is version {older}" in message
    assert f"needs version {latest(store_url)}" in message
    assert "read-only open never migrates" in message
    assert "procession migrate --db" in message, "it says what to do"
    assert snapshot(store_url) == before
    open_store(store_url).close()  # migrated, read-write ...
    with open_store(store_url, readonly=True) as store:  # ... now it opens read-only
        assert store.head_position() == 0


def test_a_read_only_open_of_a_newer_schema_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    raw_execute(store_url, "UPDATE procession_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaError, match="version 999, newer than this procession"):
        open_store(store_url, readonly=True)


def test_a_read_only_in_memory_store_is_empty_and_refuses_writes() -> None:
    with open_store("sqlite:///:memory:", make_registry(), readonly=True) as store:
        assert store.readonly
        assert store.head_position() == 0 and list(store.read_all()) == []
        assert operations.status(store)["head"] == 0
        with pytest.raises(ReadOnlyStore):
            store.append("acc-1", deposits(1))


# -- SQLite: the file is opened mode=ro --------------------------------------------------------


def test_a_read_only_open_leaves_a_sqlite_file_as_it_was(tmp_path: Path) -> None:
    """No PRAGMA that writes: a store left in rollback-journal mode stays in it (the
    read-write open would switch it to WAL), and no journal or WAL file appears."""
    url = f"sqlite:///{tmp_path}/store.db"
    with open_store(url, make_registry()) as store:
        store.append("acc-1", deposits(1, 2))
    conn = sqlite3.connect(tmp_path / "store.db")
    assert conn.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    conn.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    before = snapshot(url)
    with open_store(url, make_registry(), readonly=True) as store:
        assert [e.data["amount"] for e in store.read_all()] == [1, 2]
        with pytest.raises(ReadOnlyStore):
            store.append("acc-1", deposits(3))
    assert snapshot(url) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    conn = sqlite3.connect(tmp_path / "store.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_a_read_only_sqlite_file_opens_read_only(tmp_path: Path) -> None:
    """Mode 0444. Root may write it anyway: what holds for every user is that our
    connection cannot (mode=ro), and the file is left byte for byte as it was."""
    url = f"sqlite:///{tmp_path}/store.db"
    with open_store(url, make_registry()) as store:
        store.append("acc-1", deposits(1, 2))
    (tmp_path / "store.db").chmod(0o444)
    before = snapshot(url)
    with open_store(url, make_registry(), readonly=True) as store:
        assert [e.data["amount"] for e in store.read_all()] == [1, 2]
        with pytest.raises(ReadOnlyStore):
            store.append("acc-1", deposits(3))
        with pytest.raises(ReadOnlyStore), store.transaction() as tx:
            tx.set_checkpoint("router", 1)
    assert snapshot(url) == before


# -- SQLite: where permissions apply (as `nobody` when the tests run as root) ------------------


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


def _others_can_read_procession() -> bool:
    """The child reads procession's SQL files after it has dropped root."""
    folder = Path(procession.store.__file__).resolve().parent
    for directory in [folder / "sql", *folder.parents]:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return all(p.stat().st_mode & stat.S_IROTH for p in (folder / "sql").rglob("*.sql"))


class Reader:
    """`action()` in a child process that permission bits apply to: as `nobody` when the
    tests run as root (forked: nothing is imported after the fork), else in this process."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.pid = 0
        self._result: Any = None
        if os.geteuid() != 0:
            self._result = self._outcome(action)
            return
        if not _others_can_read_procession():
            pytest.skip("running as root, and `nobody` cannot read procession's SQL files")
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: drop root, act, send the outcome, leave at once
            os.close(read_end)
            code = 0
            try:
                uid, gid = _nobody()
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                outcome = self._outcome(action)
                with os.fdopen(write_end, "wb") as out:
                    pickle.dump(outcome, out)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_end)
        self._pipe = read_end

    @staticmethod
    def _outcome(action: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, action()
        except Exception as exc:
            try:
                pickle.dumps(exc)
            except Exception:
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            return False, exc

    def result(self) -> Any:
        if self.pid:
            with os.fdopen(self._pipe, "rb") as inp:
                data = inp.read()
            _, status = os.waitpid(self.pid, 0)
            assert data and status == 0, f"the reader died (status {status})"
            self._result = pickle.loads(data)
        ok, value = self._result
        if not ok:
            raise value
        return value


def run_as_reader(action: Callable[[], Any]) -> Any:
    return Reader(action).result()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory `nobody` may enter (pytest's tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="procession-readonly-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def make_store(folder: Path, *amounts: int) -> str:
    url = f"sqlite:///{folder}/store.db"
    with open_store(url, make_registry()) as store:
        store.append("acc-1", deposits(*amounts))
    return url


def read_amounts(url: str) -> list[int]:
    with open_store(url, make_registry(), readonly=True) as store:
        return [e.data["amount"] for e in store.read_all()]


def try_write(url: str) -> str:
    """Refused: the error's message (a write that succeeded would return nothing)."""
    with open_store(url, make_registry(), readonly=True) as store:
        try:
            store.append("acc-1", deposits(9))
        except ReadOnlyStore as exc:
            return str(exc)
    raise AssertionError("a read-only store wrote")


def test_a_file_without_write_permission_is_read_and_cannot_be_opened_to_write(
    public_dir: Path,
) -> None:
    url = make_store(public_dir, 1, 2)
    (public_dir / "store.db").chmod(0o444)
    before = snapshot(url)
    assert run_as_reader(lambda: read_amounts(url)) == [1, 2]
    assert "opened read-only" in run_as_reader(lambda: try_write(url))
    with pytest.raises(StoreUnavailable, match="the file is read-only") as caught:
        run_as_reader(lambda: open_store(url).close())
    assert "readonly=True" in str(caught.value), "it says how to look at it"
    assert snapshot(url) == before


def test_a_store_in_a_directory_without_write_permission_is_read(public_dir: Path) -> None:
    """No writer has it open, so it has no -wal or -shm (which SQLite's `mode=ro` alone
    would have to create, and cannot there): it is read as it is, and nothing appears."""
    url = make_store(public_dir, 1, 2)
    (public_dir / "store.db").chmod(0o666)  # the file could be written: the directory not
    before = snapshot(url)
    public_dir.chmod(0o555)
    assert run_as_reader(lambda: read_amounts(url)) == [1, 2]
    assert "opened read-only" in run_as_reader(lambda: try_write(url))
    with pytest.raises(StoreUnavailable, match="its directory cannot be written") as caught:
        run_as_reader(lambda: open_store(url).close())  # a writer needs the directory
    assert "readonly=True" in str(caught.value), "it says how to look at it"
    with pytest.raises(StoreUnavailable, match=f"{public_dir} cannot be written"):
        run_as_reader(lambda: open_store(f"sqlite:///{public_dir}/new.db").close())
    assert snapshot(url) == before
    assert [p.name for p in public_dir.iterdir()] == ["store.db"]


def test_a_reader_leaves_nothing_in_a_directory_it_may_write(public_dir: Path) -> None:
    """SQLite's `mode=ro` alone would create the -wal and -shm of a WAL store no writer has
    open, owned by the reader: the store's owner could then no longer write it. The reader
    reads the file as it is instead, and creates nothing."""
    url = make_store(public_dir, 1, 2)
    public_dir.chmod(0o777)
    before = snapshot(url)
    assert run_as_reader(lambda: read_amounts(url)) == [1, 2]
    assert snapshot(url) == before
    with open_store(url, make_registry()) as owner:
        owner.append("acc-1", deposits(3))


needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs two users: a writer who may write the directory and a reader who may not "
    "(run as root: the reader then runs as nobody)",
)


class Signals:
    """Two pipes between a reader (child) and the test (parent), made before the fork."""

    def __init__(self) -> None:
        self.ready_r, self.ready_w = os.pipe()
        self.go_r, self.go_w = os.pipe()

    def reader_waits(self) -> None:  # in the reader
        os.write(self.ready_w, b"r")
        assert os.read(self.go_r, 1) == b"g"

    def writer_waits(self) -> None:  # in the test
        assert os.read(self.ready_r, 1) == b"r", "the reader stopped before its signal"

    def go(self) -> None:
        os.write(self.go_w, b"g")

    def forked(self) -> None:
        """In the test, once the reader runs: its ends are its own (so that the test sees
        the end of the pipe if the reader dies before its signal)."""
        os.close(self.ready_w)
        os.close(self.go_r)

    def close(self) -> None:
        for fd in (self.ready_r, self.go_w):
            os.close(fd)


@needs_root
def test_a_reader_in_a_read_only_directory_sees_a_writer_that_starts_later(
    public_dir: Path,
) -> None:
    """Once a writer has the store open (its -wal and -shm exist), the reader's next
    transaction reads through them (mode=ro), so it sees the writer's commits."""
    url = make_store(public_dir, 1)
    public_dir.chmod(0o555)
    signals = Signals()

    def reader() -> tuple[list[int], list[int]]:
        with open_store(url, make_registry(), readonly=True) as store:
            first = [e.data["amount"] for e in store.read_all()]
            signals.reader_waits()
            return first, [e.data["amount"] for e in store.read_all()]

    child = Reader(reader)
    signals.forked()
    try:
        signals.writer_waits()
        with open_store(url, make_registry()) as writer:  # root may write the directory
            writer.append("acc-1", deposits(2))
            signals.go()
            assert child.result() == ([1], [1, 2])
    finally:
        signals.close()
