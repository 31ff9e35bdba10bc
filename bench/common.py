"""Shared helpers for the benchmarks: machine facts, throwaway stores, timing, peak RSS.

Every bench prints one JSON object on stdout and its progress on stderr, so
`python bench/x.py > result.json` keeps a clean record.
"""

from __future__ import annotations

import os
import platform
import resource
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

PG_URL = os.environ.get(
    "PROCESSION_BENCH_PG",
    os.environ.get("PROCESSION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
)
"""The PostgreSQL database the benches create (and drop) their schemas in."""

# The pragmas procession's SQLite adapter sets (src/procession/store/sqlite.py), for the
# floor's raw connections: the floor must run on the same engine settings.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA busy_timeout=30000",
)


def log(*parts: object) -> None:
    """Progress on stderr (stdout is reserved for the JSON result)."""
    print(*parts, file=sys.stderr, flush=True)


def now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def command_line() -> str:
    return shlex.join(["python", *sys.argv])


# -- machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def pg_info(url: str = PG_URL) -> dict[str, Any] | None:
    """Server version and the settings that move write throughput; None if no server."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            info: dict[str, Any] = {}
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers"):
                row = conn.execute(f"SHOW {name}").fetchone()
                info[name] = row[0] if row else None
            return info
    except Exception as exc:  # no driver or no server: the bench reports and goes on
        log(f"PostgreSQL unavailable at {url}: {exc}")
        return None


def load_avg() -> list[float]:
    """1, 5 and 15 minute load averages: above ~1 on an idle bench, someone else is busy."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(pg_url: str | None = PG_URL) -> dict[str, Any]:
    """What a result needs beside it to be comparable: CPU, RAM, Python, database versions."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gb": _ram_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_avg_at_start": load_avg(),
    }
    try:
        import msgspec
        import psycopg

        info["msgspec"] = msgspec.__version__
        info["psycopg"] = f"{psycopg.__version__} ({psycopg.pq.__impl__})"
    except ImportError:
        pass
    pg = pg_info(pg_url) if pg_url else None
    info["postgres"] = pg["server_version"] if pg else None
    info["postgres_settings"] = pg
    return info


def git_state(root: Path | None = None) -> dict[str, Any]:
    """The commit of the procession being measured (the checkout it is imported from), and
    whether its src/ had uncommitted changes (figures then describe the work tree)."""
    if root is None:
        import procession

        root = Path(procession.__file__).resolve().parent.parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    return {
        "checkout": str(root),
        "commit": commit or None,
        "src_dirty": bool(git("status", "--porcelain", "--", "src")) if commit else None,
    }


# -- timing and memory -----------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rate_summary(count: int, seconds: list[float]) -> dict[str, Any]:
    """events/s as the median over repeated runs, with every run's figure for the record."""
    rates = [count / s for s in seconds]
    return {
        "events": count,
        "events_per_s": round(statistics.median(rates)),
        "runs_events_per_s": [round(r) for r in rates],
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024, 1)


# -- throwaway databases ---------------------------------------------------------------------


@contextmanager
def temp_dir(prefix: str = "procession-bench-") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A raw connection with procession's pragmas, in autocommit (explicit BEGIN/COMMIT)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


def pg_schema_url(schema: str, base: str = PG_URL) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def pg_schema(prefix: str = "bench", base: str = PG_URL) -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped afterwards."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_schema_url(schema, base)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# -- one measurement per child process ---------------------------------------------------------


def run_child(
    script: str, backend: str, n: int, what: str, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Run `script --child backend --sizes n [extra]` in a fresh interpreter (its own peak
    RSS) and return the JSON object it prints."""
    import json

    log(f"{backend}: {what} {n:,} ...")
    cmd = [sys.executable, script, "--child", backend, "--sizes", str(n), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    log(f"{backend}: {result}")
    return result


def in_fresh_store(
    backend: str, name: str, measure: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """Call `measure(url)` on a new SQLite file or a new PostgreSQL schema, then drop it."""
    with temp_dir() as folder:
        if backend == "sqlite":
            return measure(sqlite_url(folder / f"{name}.db"))
        with pg_schema(f"bench_{name}") as url:
            return measure(url)


def header(bench: str) -> dict[str, Any]:
    """What every result carries: which bench, when, how it was called, on what, from where."""
    return {
        "bench": bench,
        "date": now_iso(),
        "command": command_line(),
        "machine": machine_info(),
        "git": git_state(),
    }
