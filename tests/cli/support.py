"""Running `credit-contracts` as a real subprocess (or, faster, in this process) and reading
what it left in the store."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from credit_contracts.views.contracts_by_customer import contracts_of
from procession import open_store

COMMAND = [sys.executable, "-m", "credit_contracts.cli"]
TERMINAL = {"CustomerContractReconfirmed": "reconfirmed", "ContractTerminated": "terminated"}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def data(self) -> dict[str, Any]:
        """The one JSON object on stdout (fails unless stdout is exactly that)."""
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line on stdout, got {self.stdout!r}"
        data = json.loads(lines[0])
        assert isinstance(data, dict)
        return data


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> Result:
    done = subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def run_here(*args: str) -> Result:
    """The command line in this process: the same code path as the subprocess (clikit.run),
    without starting an interpreter; stdout and stderr captured."""
    from credit_contracts.cli import exit_code

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = exit_code(list(args))
    result = Result(code, stdout.getvalue(), stderr.getvalue())
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def ok(*args: str) -> dict[str, Any]:
    """Run with --json; it must succeed, with one JSON object on stdout."""
    result = run_cli(*args, "--json")
    assert result.code == 0, result.stderr
    return result.data


def fails(*args: str) -> str:
    """Run with --json; it must fail with one error line and one {"error"} object."""
    result = run_cli(*args, "--json")
    assert result.code != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    message = result.data["error"]
    assert isinstance(message, str) and message == lines[0][len("error: ") :]
    return message


def head(url: str) -> int:
    with open_store(url) as store:
        return store.head_position()


def final_statuses(url: str, customer_ids: list[str]) -> dict[str, str]:
    """Every contract's status in the contracts_by_customer view."""
    found: dict[str, str] = {}
    with open_store(url) as store:
        for customer_id in customer_ids:
            after = None
            while page := contracts_of(store, customer_id, after=after, limit=1000):
                found.update((row.contract_id, row.status) for row in page)
                after = page[-1].contract_id
    return found


def logged_outcomes(url: str) -> dict[str, str]:
    """'reconfirmed' or 'terminated' per contract from the log; each must end exactly once."""
    ends: dict[str, list[str]] = {}
    with open_store(url) as store:
        for event in store.read_all():
            if event.type in TERMINAL:
                ends.setdefault(event.data["contract_id"], []).append(TERMINAL[event.type])
    assert all(len(outcomes) == 1 for outcomes in ends.values()), "a contract ended twice"
    return {contract_id: outcomes[0] for contract_id, outcomes in ends.items()}


def log_head(path: Path) -> int:
    """A SQLite store's log head, read beside the process writing it (0 before it has one)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0])
    except sqlite3.Error:  # the schema is not there yet
        return 0
