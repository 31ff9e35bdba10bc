"""`procession batches list|show|pause|resume|cancel|throttle`: --json shapes, the human
line, the audit trail and refusals (one line, exit 2)."""

from __future__ import annotations

import contextlib
import getpass
import io
import json
from typing import Any

import pytest

from procession import Runtime, VirtualClock, clikit, open_store
from procession.cli import cli
from tests.cli.test_procession_cli import procession
from tests.support.toy import OpenAccount, ReviewGroup, build_app

BATCH = "review-g1-1"


def run(*args: str) -> tuple[int, str, str]:
    """The command line in this process (the code path of `procession`: clikit.run)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = clikit.run(cli, "procession", list(args))
    assert "Traceback" not in out.getvalue() + err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


def as_json(*args: str) -> dict[str, Any]:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    [line] = out.splitlines()
    data: dict[str, Any] = json.loads(line)
    return data


@pytest.fixture
def running(store_url: str) -> str:
    """A store with a review of 5 accounts started and nothing of it dispatched."""
    with open_store(store_url) as store:
        rt = Runtime(build_app(), store, VirtualClock(store=store))
        for i in range(5):
            rt.send(OpenAccount(account_id=f"a{i}", group="g1"))
        rt.send(ReviewGroup(group="g1"))
        for _ in range(4):
            rt.run_once_stages({"projection:accounts_by_group", "router", "processes"})
    return store_url


def control_events(url: str) -> list[Any]:
    with open_store(url) as store:
        return [e for e in store.read_all() if e.stream_id == f"procession.batch-{BATCH}"]


def test_list_and_show(running: str) -> None:
    listed = as_json("batches", "list", "--db", running)
    assert [b["batch_id"] for b in listed["batches"]] == [BATCH]
    shown = as_json("batches", "show", BATCH, "--db", running)
    assert shown["status"] == "enumerating" and shown["paused"] is False
    assert shown["max_in_flight"] == 50 and shown["rate_limit"] is None
    code, out, _ = run("batches", "show", BATCH, "--db", running)
    assert code == 0 and out.startswith(f"{BATCH}: enumerating, 0/0 finished")


def test_pause_resume_throttle_cancel_as_json_and_audited(running: str) -> None:
    paused = as_json("batches", "pause", BATCH, "--db", running, "--reason", "outage")
    assert paused["paused"] is True
    assert (
        as_json("batches", "resume", BATCH, "--db", running, "--by", "http:ann")["paused"] is False
    )
    throttled = as_json(
        "batches", "throttle", BATCH, "--db", running, "--max-in-flight", "3", "--rate", "100/hour"
    )
    assert throttled["max_in_flight"] == 3
    assert throttled["rate_limit"] == {"items": 100, "per_seconds": 3600.0}
    lifted = as_json("batches", "throttle", BATCH, "--db", running, "--rate", "none")
    assert lifted["rate_limit"] is None and lifted["max_in_flight"] == 3
    cancelled = as_json("batches", "cancel", BATCH, "--db", running, "--reason", "by mistake")
    assert cancelled["status"] == "cancelling"
    events = control_events(running)
    me = f"cli:{getpass.getuser()}"
    assert [(e.type, e.data["by"], e.data["reason"]) for e in events] == [
        ("BatchPaused", me, "outage"),
        ("BatchResumed", "http:ann", ""),
        ("BatchThrottled", me, ""),
        ("BatchThrottled", me, ""),
        ("BatchCancelRequested", me, "by mistake"),
    ]


def test_a_change_prints_one_human_line(running: str) -> None:
    code, out, _ = run("batches", "pause", BATCH, "--db", running)
    assert code == 0
    [line] = out.splitlines()
    assert line.startswith(f"{BATCH}: enumerating, paused")
    code, out, _ = run("batches", "throttle", BATCH, "--db", running, "--rate", "5/min")
    assert code == 0 and out.strip().endswith("max in flight 50, rate 5/60s")


@pytest.mark.parametrize("rate", ["fast", "5", "5/fortnight", "0/hour", "-3/s", "5/0min"])
def test_a_bad_rate_is_refused_in_one_line(running: str, rate: str) -> None:
    code, out, err = run("batches", "throttle", BATCH, "--db", running, "--rate", rate)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert control_events(running) == []


def test_refusals_exit_2_with_one_line(running: str) -> None:
    code, out, err = run("batches", "pause", "nope", "--db", running, "--json")
    assert code == 2 and json.loads(out) == {"error": "no batch 'nope'"}
    assert err == "error: no batch 'nope'\n"
    code, _, err = run("batches", "throttle", BATCH, "--db", running)
    assert code == 2 and "give max_in_flight" in err
    code, _, err = run("batches", "throttle", BATCH, "--db", running, "--max-in-flight", "0")
    assert code == 2 and "at least 1" in err


def test_the_installed_command_runs_the_group(running: str) -> None:
    code, out, err = procession("batches", "pause", BATCH, "--db", running, "--json", "--by", "x")
    assert code == 0, err
    assert json.loads(out)["paused"] is True
    code, _, err = procession(
        "batches", "throttle", BATCH, "--db", running, "--rate", "2/fortnight"
    )
    assert code == 2 and err.startswith("error: a rate looks like")
