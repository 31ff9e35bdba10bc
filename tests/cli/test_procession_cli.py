"""`procession`'s own command line, run as a real subprocess: --json shapes and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
