"""The faults thrown at PostgreSQL workers: SIGKILL of one of them (the test restarts it,
as a supervisor would), and `pg_terminate_backend` of every session of the system under
test. Sessions are found by an `application_name` unique to the test, put in the URL the
workers and the demo are given: the test's own sessions, and other tests', are spared."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.cli.support import COMMAND
from tests.conftest import PG_URL


def with_application_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={quote(name)}"


class Crew:
    """`credit-contracts worker` processes, one per slot, each output in its own file."""

    def __init__(self, url: str, size: int, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.started = 0
        self.log_by_pid: dict[int, Path] = {}
        self.slots = [self.spawn() for _ in range(size)]

    def spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = self.logs / f"worker-{self.started}.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [*COMMAND, "worker", "--db", self.url, "--clock", "virtual"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.log_by_pid[worker.pid] = log
        return worker

    def kill(self, slot: int) -> None:
        """SIGKILL the worker of `slot` (its open transaction dies with it); start another."""
        victim = self.slots[slot]
        victim.kill()
        assert victim.wait() == -signal.SIGKILL, "a worker had exited by itself"
        self.slots[slot] = self.spawn()

    def assert_alive(self) -> None:
        dead = [w.returncode for w in self.slots if w.poll() is not None]
        assert not dead, f"workers exited by themselves ({dead}):\n{self.output()[-3000:]}"

    def wait_started(self) -> None:
        """Until every live worker has said it started: its SIGTERM handler is then in place
        (a SIGTERM during its imports would kill it, as it would any Python program)."""
        deadline = time.monotonic() + 60
        for worker in self.slots:
            log = self.log_by_pid[worker.pid]
            while "started on" not in log.read_text(errors="replace") and worker.poll() is None:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)

    def stop(self) -> list[int]:
        """SIGTERM: each finishes its transaction and exits 0; SIGKILL after 60 s."""
        self.wait_started()
        for worker in self.slots:
            if worker.poll() is None:
                worker.terminate()
        return [self.reap(worker) for worker in self.slots]

    def reap(self, worker: subprocess.Popen[bytes]) -> int:
        try:
            return worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            return worker.wait()

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in sorted(self.logs.iterdir()))


class Terminator(threading.Thread):
    """Every few (seeded random) seconds, `pg_terminate_backend` on every session of the
    system under test, waiting a little for one to be inside a transaction first."""

    def __init__(self, application_name: str, rng: random.Random, every: tuple[float, float]):
        super().__init__(daemon=True)
        self.name_ = application_name
        self.rng = rng
        self.every = every
        self.halt = threading.Event()
        self.rounds = 0
        """Rounds that cut at least one session."""
        self.sessions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with closing(psycopg.connect(PG_URL, autocommit=True)) as admin:
                while not self.halt.wait(self.rng.uniform(*self.every)):
                    cut = self.terminate(admin)
                    self.rounds += cut > 0
                    self.sessions += cut
        except BaseException as exc:  # reported by stop(): a thread's failure is the test's
            self.error = exc

    def terminate(self, admin: psycopg.Connection[tuple[object, ...]]) -> int:
        mine = "datname = current_database() AND pid <> pg_backend_pid() AND application_name = %s"
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            row = admin.execute(
                f"SELECT COUNT(*) FROM pg_stat_activity WHERE {mine} AND state <> 'idle'",
                (self.name_,),
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.005)
        rows = admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {mine}", (self.name_,)
        ).fetchall()
        return sum(1 for (done,) in rows if done)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error
