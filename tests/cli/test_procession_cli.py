"""`procession`'s own command line, run as a real subprocess: --json shapes and errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from contract.schema_dump import apply_migrations, backend_of, dump, meta, migration_files
from procession import RetryPolicy, Runtime, VirtualClock, open_store
from tests.engine.test_failures import Fragile
from tests.support.toy import OpenAccount, build_app

ROOT = Path(__file__).resolve().parents[2]


def procession(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "procession.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def one_json(stdout: str) -> dict[str, object]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def parked_store(url: str) -> None:
    app = build_app()
    fragile = Fragile()
    fragile.retry_policy = RetryPolicy(max_attempts=1)
    app.process(fragile)
    store = open_store(url)
    rt = Runtime(app, store, VirtualClock())
    rt.send(OpenAccount(account_id="bad-1", group="g"))
    rt.run_until_idle()
    store.close()


def test_status_parked_retry_skip_as_json(store_url: str) -> None:
    parked_store(store_url)
    code, out, _ = procession("status", "--db", store_url, "--json")
    status = one_json(out)
    assert code == 0
    assert status["backend"] in ("sqlite", "postgres") and status["head"] == 1
    assert status["parked"] == 1 and status["inbox"] == 1
    assert status["checkpoints"] == {"router": 1, "projection:accounts_by_group": 1}

    code, out, _ = procession("parked", "--db", store_url, "--json")
    [item] = one_json(out)["parked"]  # type: ignore[misc]
    assert code == 0 and item["instance_id"] == "bad-1" and "cannot handle" in item["error"]

    code, out, _ = procession("retry", item["id"], "--db", store_url, "--json")
    assert code == 0 and one_json(out) == {"id": item["id"], "retried": True}
    code, out, err = procession("retry", item["id"], "--db", store_url, "--json")
    assert code == 2 and one_json(out)["error"] == f"no parked message {item['id']!r}"
    assert err.startswith("error: no parked message")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("status", "--db", "mysql://x/y"), "unknown store URL scheme 'mysql'"),
        (("status", "--db", "postgresql://postgres@127.0.0.1:1/test"), "cannot connect"),
        (("worker", "--app", "nope", "--db", "sqlite:///:memory:"), "must look like"),
        (("worker", "--app", "no.such.module:app", "--db", "sqlite:///:memory:"), "cannot load"),
        (
            (
                "worker",
                "--app",
                "tests.support.toy:build_app",
                "--db",
                "sqlite:///:memory:",
                "--clock",
                "sundial",
            ),
            "--clock must be system or virtual",
        ),
        (("skip", "42", "--db", "sqlite:///:memory:"), "no parked message '42'"),
        (("statu", "--db", "sqlite:///:memory:"), "No such command"),
        (("status", "--db", "sqlite:///no/such/place.db"), "no store at no/such/place.db"),
    ],
)
def test_errors_are_one_line_and_one_json_object(args: tuple[str, ...], message: str) -> None:
    code, out, err = procession(*args, "--json")
    assert code == 2
    assert message in one_json(out)["error"]  # type: ignore[operator]
    assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_worker_runs_until_idle_and_reports_on_stderr(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    store = open_store(url)
    Runtime(build_app(), store, VirtualClock()).send(OpenAccount(account_id="a", group="g"))
    store.close()
    code, out, err = procession(
        "worker", "--app", "tests.support.toy:build_app", "--db", url, "--until-idle"
    )
    assert code == 0 and out == "" and "worker stopped" in err
    with open_store(url) as store, store.transaction() as tx:
        assert tx.checkpoint("router") == 1


# -- commands that cannot destroy data (issue 9) ------------------------------------------------

WORKER = ("worker", "--app", "tests.support.toy:build_app", "--until-idle")
COMMANDS = {
    "status": ("status",),
    "parked": ("parked",),
    "retry": ("retry", "1"),
    "skip": ("skip", "1"),
    "rewind": ("rewind", "router", "0"),
    "migrate": ("migrate",),
    "worker": WORKER,
}


def latest(url: str) -> int:
    return migration_files(backend_of(url))[-1][0]


def refused(*args: str) -> str:
    """Exit 2 with one error line on stderr and one {"error"} object on stdout."""
    code, out, err = procession(*args, "--json")
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    message = one_json(out)["error"]
    assert isinstance(message, str) and err == f"error: {message}\n"
    return message


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_the_looking_commands_read_a_read_only_file_and_leave_it_as_it_was(
    tmp_path: Path,
) -> None:
    """`status` and `parked` open the store read-only (mode=ro): a file without write
    permission will do, and they change nothing (root could write it: the bytes and the
    modification time say that they did not, and no -wal or -shm appears)."""
    url = f"sqlite:///{tmp_path}/store.db"
    parked_store(url)
    path = tmp_path / "store.db"
    path.chmod(0o444)
    before = files_of(tmp_path)
    code, out, _ = procession("status", "--db", url, "--json")
    assert code == 0
    status = one_json(out)
    assert status["head"] == 1 and status["parked"] == 1
    code, out, _ = procession("parked", "--db", url, "--json")
    assert code == 0
    [item] = one_json(out)["parked"]  # type: ignore[misc]
    assert item["instance_id"] == "bad-1"
    assert files_of(tmp_path) == before, "nothing changed, nothing appeared beside it"


def test_a_worker_creates_no_sqlite_store(tmp_path: Path) -> None:
    """On PostgreSQL the first worker creates its tables in the (empty) database."""
    path = tmp_path / "typo.db"
    assert refused(*WORKER, "--db", f"sqlite:///{path}") == f"no store at {path}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "command"),
    [("empty", command) for command in COMMANDS]
    + [(kind, command) for kind in ("text", "foreign") for command in ("status", "retry")],
)
def test_commands_refuse_a_file_that_is_not_a_store_and_leave_it_as_it_was(
    tmp_path: Path, kind: str, command: str
) -> None:
    path = tmp_path / "store.db"
    if kind == "empty":
        path.write_bytes(b"")
        expected = f"{path} is an empty file, not a procession store"
    elif kind == "text":
        path.write_text("not a database\n")
        expected = f"{path} is not a SQLite database, so not a procession store"
    else:
        conn = sqlite3.connect(path)
        conn.executescript("CREATE TABLE a (id INTEGER); CREATE TABLE b (id INTEGER);")
        conn.close()
        expected = f"{path} is a SQLite database but not a procession store (it has tables: a, b)"
    before = files_of(tmp_path)
    assert refused(*COMMANDS[command], "--db", f"sqlite:///{path}").startswith(expected)
    assert files_of(tmp_path) == before


def test_a_looking_command_on_an_older_schema_says_to_migrate(store_url: str) -> None:
    older = latest(store_url) - 1
    apply_migrations(store_url, older)
    message = refused("status", "--db", store_url)
    assert f"the store's schema is version {older}" in message
    assert "procession migrate --db URL" in message
    assert meta(store_url)["schema_version"] == str(older), "nothing was migrated"
    code, out, _ = procession("migrate", "--db", store_url, "--json")
    assert (code, one_json(out)) == (0, {"schema_version": latest(store_url)})
    code, out, _ = procession("status", "--db", store_url, "--json")
    assert code == 0 and one_json(out)["head"] == 0


def test_no_operator_command_creates_a_store(store_url: str) -> None:
    """No SQLite file appears; no table appears in the (empty) PostgreSQL schema."""
    sqlite = store_url.startswith("sqlite")
    for name, command in COMMANDS.items():
        if name == "worker":
            continue
        message = refused(*command, "--db", store_url)
        if sqlite:
            assert message == f"no store at {store_url[len('sqlite:///') :]}", name
        else:
            assert message.startswith("no procession store in postgresql://"), name
    if sqlite:
        assert not Path(store_url[len("sqlite:///") :]).exists()
    else:
        assert not dump(store_url)["tables"]
