"""Named SQL, loaded from `.sql` files (never built by string concatenation)."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def parse(text: str) -> dict[str, str]:
    """Split a file of `-- name: x` sections into {name: sql}."""
    parts = _NAME.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def load(backend: str) -> dict[str, str]:
    """Shared queries overlaid with the backend's own."""
    root = resources.files("procession.store") / "sql"
    queries = parse((root / "queries.sql").read_text())
    queries.update(parse((root / backend / "queries.sql").read_text()))
    if backend == "postgres":
        # positional parameters are written `?` (sqlite3's style) and become psycopg's `%s`
        return {name: to_pyformat(sql).replace("?", "%s") for name, sql in queries.items()}
    return queries


def to_pyformat(sql: str) -> str:
    """`:name` parameters to psycopg's `%(name)s` (a literal % doubled)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def migrations(backend: str) -> list[tuple[int, str]]:
    """(number, sql) for every numbered migration of a backend, in order."""
    folder = resources.files("procession.store") / "sql" / backend
    found = []
    for entry in folder.iterdir():
        head = entry.name.split("_", 1)[0]
        if entry.name.endswith(".sql") and head.isdigit():
            found.append((int(head), entry.read_text()))
    return sorted(found)
