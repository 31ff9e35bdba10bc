"""Human output of both command lines (issue 10): readable tables, rates and durations in
units people read, ids never cut, a terminated contract called so; --json as documented."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from procession import RetryPolicy, Runtime, VirtualClock, open_store
from procession.cli import parked_table, print_table, status_table
from tests.engine.test_failures import Fragile
from tests.support.toy import OpenAccount, build_app

from .support import ok, run_cli

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "contracts.md"
LONG_ID = "bad-" + "x" * 123 + "9"  # 128 characters, as validation allows
SCIENTIFIC = re.compile(r"\d[eE][-+]?\d")
NARROW = {"COLUMNS": "60"}


def procession(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "procession.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=None if env is None else {**_environ(), **env},
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}


def documented_keys(command: str) -> list[set[str]]:
    """The key sets docs/contracts.md's table gives a command (`a, b` / `c, d`: two sets)."""
    for line in CONTRACTS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith(f"`{command}`"):
            groups = re.findall(r"`([^`]*)`", cells[1])
            return [{key.strip() for key in group.split(",")} for group in groups]
    raise AssertionError(f"{command} is not in docs/contracts.md")


def parked_store(url: str, account_id: str = LONG_ID) -> None:
    """One delivery parked, to the process instance `account_id`."""
    app = build_app()
    fragile = Fragile()
    fragile.retry_policy = RetryPolicy(max_attempts=1)
    app.process(fragile)
    with open_store(url) as store:
        runtime = Runtime(app, store, VirtualClock())
        runtime.send(OpenAccount(account_id=account_id, group="g"))
        runtime.run_until_idle()


def one_json(stdout: str) -> dict[str, Any]:
    [line] = stdout.splitlines()
    data = json.loads(line)
    assert isinstance(data, dict)
    return data


# -- procession ----------------------------------------------------------------------------


def test_status_for_people_is_a_table_with_the_head_and_each_lag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    parked_store(url)
    done = procession("status", "--db", url, env=NARROW)
    assert done.returncode == 0 and done.stderr == ""
    text = done.stdout
    assert "{'" not in text and "{" not in text, "not a Python dict"
    assert "log head" in text and "position 1" in text
    assert "projection:accounts_by_group" in text and "router" in text
    assert re.search(r"router\s*│\s*1\s*│\s*0\s*│", text), text  # checkpoint 1, lag 0
    assert "1 delivery waiting" in text and "see `procession parked`" in text


def test_status_lags_and_next_timer_are_shown() -> None:
    data = {
        "backend": "postgres",
        "head": 12_345,
        "checkpoints": {"projection:accounts": 12_000, "router": 12_345},
        "inbox": 2,
        "commands_pending": 1_500,
        "timers": 3,
        "parked": 0,
        "workers": [
            {
                "worker_id": "host-a:41:1f2e3d4c",
                "alive": True,
                "stopped_at": None,
                "seen_at": time.time() - 2,
                "rounds": 12_000,
            },
            {
                "worker_id": "host-b:77:9a8b7c6d",
                "alive": False,
                "stopped_at": None,
                "seen_at": time.time() - 600,
                "rounds": 3,
            },
        ],
    }
    overview, consumers, workers = status_table(data, next_due=9000.0)
    cells = [str(c) for column in overview.columns for c in column._cells]
    assert "position 12,345" in cells and "1,500" in cells and "3 (next due in 2.5 h)" in cells
    lag = [str(c) for c in consumers.columns[2]._cells]
    assert lag == ["345", "0"]
    assert workers.title == "workers: 1 alive"
    rows = list(zip(*([str(c) for c in column._cells] for column in workers.columns), strict=True))
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("host-a:41:1f2e3d4c", "alive", "12,000"),
        ("host-b:77:9a8b7c6d", "gone", "3"),  # killed: not seen for 10 min, never stopped
    ]
    assert rows[1][2] == "10 min ago"


def test_parked_says_nothing_parked_when_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    open_store(url).close()
    done = procession("parked", "--db", url)
    assert done.returncode == 0 and done.stdout == "nothing parked\n"
    assert one_json(procession("parked", "--db", url, "--json").stdout) == {"parked": []}


def test_a_parked_items_long_id_appears_whole_on_a_narrow_terminal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    parked_store(url)
    done = procession("parked", "--db", url, env=NARROW)
    assert done.returncode == 0
    assert f"Fragile:{LONG_ID}" in done.stdout, done.stdout
    assert "…" not in done.stdout and "cannot handle" in done.stdout


def test_a_parked_commands_long_id_is_never_cut(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    item = {"kind": "command", "id": LONG_ID, "type": "Freeze", "attempts": 5, "error": "down"}
    print_table(parked_table([item]))
    out = capsys.readouterr().out
    assert LONG_ID in out and "…" not in out


def test_procession_json_outputs_keep_their_documented_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/j.db"
    parked_store(url, "bad-1")
    status = one_json(procession("status", "--db", url, "--json").stdout)
    assert [set(status)] == documented_keys("procession status")
    assert status["head"] == 1 and status["checkpoints"] == {
        "projection:accounts_by_group": 1,
        "router": 1,
    }
    [item] = one_json(procession("parked", "--db", url, "--json").stdout)["parked"]
    assert set(item) == {"kind", "id", "attempts", "error", "type", "process", "instance_id"}
    rewound = one_json(procession("rewind", "router", "0", "--db", url, "--json").stdout)
    assert [set(rewound)] == documented_keys("procession rewind CONSUMER POSITION")
    assert rewound == {"consumer": "router", "from": 1, "to": 0}
    retried = one_json(procession("retry", item["id"], "--db", url, "--json").stdout)
    assert set(retried) in documented_keys("procession retry ID")


def test_rewind_retry_and_skip_say_what_they_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    parked_store(url, "bad-1")
    assert procession("rewind", "router", "0", "--db", url).stdout == "router: checkpoint 1 -> 0\n"
    assert procession("skip", "1", "--db", url).stdout == "skipped 1\n"


# -- credit-contracts ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A store whose customer (and so batch) ids are 128 characters and more."""
    url = f"sqlite:///{tmp_path_factory.mktemp('long')}/long.db"
    customer = "c" + "y" * 127
    ok("customers", "register", "Acme", "AA", "--id", customer, "--db", url)
    ok("contracts", "open", customer, "--id", "k1", "--db", url)
    changed = ok("customers", "change-rating", customer, "B", "--db", url)
    ok("run", "--db", url)
    return url, str(changed["batch_id"])


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """A finished demo: fourteen virtual days, a slow rate per second, terminated contracts."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    data = ok("demo", "--contracts", "30", "--customers", "1", "--db", url)
    return url, data


def test_ids_are_never_cut_in_credit_contracts_tables(
    long_batch: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, batch_id = long_batch
    customer = "c" + "y" * 127
    monkeypatch.setenv("COLUMNS", "60")
    for args in (
        ("batches", "list"),
        ("batches", "show", batch_id),
        ("customers", "show", customer),
        ("contracts", "show", "k1"),
    ):
        result = run_cli(*args, "--db", url)
        assert result.code == 0, result.stderr
        assert customer in result.stdout and "…" not in result.stdout, (args, result.stdout)
    listed = run_cli("batches", "list", "--db", url)
    assert batch_id in listed.stdout
    assert batch_id in run_cli("batches", "show", batch_id, "--db", url).stdout


def test_batches_label_failed_items_terminated_never_red(
    demo_store: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, demo = demo_store
    for args in (("batches", "list"), ("batches", "show", demo["batch_id"])):
        result = run_cli(*args, "--db", url)
        assert result.code == 0
        assert "terminated" in result.stdout and "failed" not in result.stdout
        monkeypatch.setenv("FORCE_COLOR", "1")  # colours as a terminal would get them
        monkeypatch.setenv("COLUMNS", "200")
        coloured = run_cli(*args, "--db", url).stdout
        monkeypatch.delenv("FORCE_COLOR")
        assert "\x1b[" in coloured and "terminated" in coloured
        assert not re.search(r"\x1b\[[0-9;]*(31|91)m", coloured), "no red"
    shown = ok("batches", "show", demo["batch_id"], "--db", url)
    assert shown["failed"] == demo["terminated"] > 0, "the JSON key stays `failed`"


def test_rates_and_etas_read_for_people(demo_store: tuple[str, dict[str, Any]]) -> None:
    url, demo = demo_store
    shown = ok("batches", "show", demo["batch_id"], "--db", url)
    assert 0 < shown["rate"] < 1e-3, "a slow rate per second: the case that printed 8.2e-07"
    for args in (("batches", "list"), ("batches", "show", demo["batch_id"])):
        text = run_cli(*args, "--db", url).stdout
        assert not SCIENTIFIC.search(text), text
        assert re.search(r"\d / (day|hour|min|s)\b", text), text
    human_demo = run_cli("run", "--db", url).stdout
    assert not SCIENTIFIC.search(human_demo)
    assert re.search(r"virtual time\s+│\s+\d+(\.\d)? days", human_demo), human_demo


def test_batch_json_outputs_keep_their_documented_keys(long_batch: tuple[str, str]) -> None:
    url, batch_id = long_batch
    shown = ok("batches", "show", batch_id, "--db", url)
    [keys] = documented_keys("credit-contracts batches show ID")
    assert set(shown) == keys
    listed = ok("batches", "list", "--db", url)
    assert set(listed) == {"batches"} and [set(b) for b in listed["batches"]] == [keys]
    assert isinstance(shown["rate"], float) and "failed" in shown
