"""Schema dumps taken with the plain drivers, independent of procession's migration runner.

`migration_files` reads the numbered `.sql` files straight from the package folder and
`apply_migrations` runs them with sqlite3 / psycopg, so that a database built here is a
reference the runner (`open_store`) can be compared with, not a second run of the runner.

`dump(url)` describes a database as its catalog sees it: tables, columns (type, nullability,
default), indexes (columns, uniqueness, partial predicate), primary/unique/CHECK/foreign-key
constraints, views and triggers. Two dumps of one backend compare with `==`.

`substance(dump)` reduces a dump to what both backends must agree on: column names with
normalised types, keys and CHECKs by their columns, indexes by name.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

import procession.store

Dump = dict[str, Any]

SQL_ROOT = Path(procession.store.__file__).parent / "sql"
_NUMBERED = re.compile(r"^(\d+)_\w*\.sql$")


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def migration_files(backend: str) -> list[tuple[int, Path]]:
    """Every numbered migration file of a backend (`NNN_name.sql`), in order."""
    found = []
    for path in (SQL_ROOT / backend).iterdir():
        match = _NUMBERED.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def apply_migrations(url: str, upto: int | None = None, *, mark: bool = True) -> None:
    """Run migrations 1..upto (all when None) with the plain driver, each file as written.

    With `mark`, record the version the way procession does (procession_meta's `schema`
    and `schema_version` keys), as an older procession would have left the database.
    """
    steps = [(n, p.read_text()) for n, p in migration_files(backend_of(url))]
    steps = [(n, sql) for n, sql in steps if upto is None or n <= upto]
    assert steps, f"no migration up to {upto}"
    upsert = (
        "INSERT INTO procession_meta (key, value) VALUES ({0}, {0}) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
    if backend_of(url) == "sqlite":
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            for number, script in steps:
                conn.executescript(script)
                if mark:
                    conn.execute(upsert.format("?"), ("schema", "procession"))
                    conn.execute(upsert.format("?"), ("schema_version", str(number)))
                conn.commit()
        finally:
            conn.close()
        return
    with psycopg.connect(url) as pg:
        for number, script in steps:
            pg.execute(script)  # no parameters: the whole script goes as one simple query
            if mark:
                pg.execute(upsert.format("%s"), ("schema", "procession"))
                pg.execute(upsert.format("%s"), ("schema_version", str(number)))
            pg.commit()


def meta(url: str) -> dict[str, str]:
    """The procession_meta rows (read with the plain driver)."""
    if backend_of(url) == "sqlite":
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return dict(conn.execute("SELECT key, value FROM procession_meta").fetchall())
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        return dict(pg.execute("SELECT key, value FROM procession_meta").fetchall())


def dump(url: str) -> Dump:
    if backend_of(url) == "sqlite":
        return _sqlite_dump(url[len("sqlite:///") :])
    return _postgres_dump(url)


# -- SQLite ------------------------------------------------------------------------------------


def _sqlite_dump(path: str) -> Dump:
    conn = sqlite3.connect(path)
    try:
        return _sqlite_catalog(conn)
    finally:
        conn.close()


def _sqlite_catalog(conn: sqlite3.Connection) -> Dump:
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master"
        " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    ).fetchall()
    index_sql = {name: sql for kind, name, _, sql in objects if kind == "index"}
    tables: dict[str, Any] = {}
    for kind, name, _, sql in objects:
        if kind != "table":
            continue
        columns = [
            {
                "name": r[1],
                "type": r[2],
                "notnull": bool(r[3]),
                "default": r[4],
                "pk": r[5],
                "hidden": r[6],
            }
            for r in conn.execute(f"PRAGMA table_xinfo('{name}')")
        ]
        indexes = []
        for _seq, index, unique, origin, partial in conn.execute(f"PRAGMA index_list('{name}')"):
            keys = [
                (r[2], bool(r[3]), r[4])  # column (None: an expression), descending, collation
                for r in conn.execute(f"PRAGMA index_xinfo('{index}')")
                if r[5]  # key columns only, not the rowid
            ]
            text = index_sql.get(index) or ""
            indexes.append(
                {
                    "name": index if origin == "c" else f"<{origin}>",  # auto names follow order
                    "unique": bool(unique),
                    "origin": origin,
                    "columns": keys,
                    "where": _where(text) if partial else None,
                }
            )
        foreign = sorted(
            (r[2], r[3], r[4], r[5], r[6], r[7])  # table, from, to, on update, on delete, match
            for r in conn.execute(f"PRAGMA foreign_key_list('{name}')")
        )
        options = conn.execute(
            "SELECT wr, strict FROM pragma_table_list WHERE name = ?", (name,)
        ).fetchone()
        tables[name] = {
            "columns": columns,
            "indexes": sorted(indexes, key=repr),
            "checks": sorted(_checks(sql), key=repr),
            "foreign_keys": foreign,
            "without_rowid": bool(options[0]),
            "strict": bool(options[1]),
        }
    others = sorted(
        (kind, name, table) for kind, name, table, _ in objects if kind in ("view", "trigger")
    )
    return {"backend": "sqlite", "tables": tables, "others": others}


def _code(sql: str) -> str:
    """`sql` with comments removed and string literals kept, whitespace collapsed."""
    out, i = [], 0
    while i < len(sql):
        c = sql[i]
        if c in "'\"`[":
            close = "]" if c == "[" else c
            j = sql.find(close, i + 1)
            while j != -1 and close != "]" and sql[j + 1 : j + 2] == close:  # doubled quote
                j = sql.find(close, j + 2)
            j = len(sql) - 1 if j == -1 else j
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = len(sql) if j == -1 else j
            out.append(" ")
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = len(sql) if j == -1 else j + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _balanced(text: str, start: int) -> int:
    """The index just after the parenthesis closing the one at `start` (quotes respected)."""
    depth, i, quote = 0, start, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced parentheses in {text!r}")


_CHECK = re.compile(r"(?:\bCONSTRAINT\s+(\"[^\"]+\"|\w+)\s+)?\bCHECK\s*\(", re.IGNORECASE)


def _checks(sql: str) -> list[tuple[str | None, str]]:
    """Every CHECK constraint of a CREATE TABLE statement: (its name or None, expression)."""
    code = _code(sql)
    found: list[tuple[str | None, str]] = []
    pos = 0
    while True:
        match = _CHECK.search(code, pos)
        if match is None:
            return found
        if _inside_quotes(code, match.start()):
            pos = match.end()
            continue
        end = _balanced(code, match.end() - 1)
        name = match.group(1).strip('"') if match.group(1) else None
        found.append((name, code[match.end() : end - 1].strip()))
        pos = end


def _inside_quotes(code: str, index: int) -> bool:
    quote = None
    for c in code[:index]:
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
    return quote is not None


def _where(index_sql: str) -> str | None:
    code = _code(index_sql)
    found = list(re.finditer(r"\bWHERE\b", code, re.IGNORECASE))
    return code[found[-1].end() :].strip() if found else None


# -- PostgreSQL --------------------------------------------------------------------------------


def _postgres_dump(url: str) -> Dump:
    with psycopg.connect(url, autocommit=True) as pg:
        row = pg.execute("SELECT current_schema()").fetchone()
        assert row is not None and row[0] is not None, "no schema on the search_path"
        schema = row[0]

        def strip(text: str | None) -> str | None:
            return None if text is None else text.replace(f"{schema}.", "")

        tables: dict[str, Any] = {
            name: {"columns": [], "indexes": [], "constraints": []}
            for (name,) in pg.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                (schema,),
            )
        }
        for r in pg.execute(
            "SELECT table_name, column_name, data_type, character_maximum_length,"
            " numeric_precision, is_nullable, column_default, is_identity, identity_generation,"
            " is_generated, generation_expression, collation_name"
            " FROM information_schema.columns WHERE table_schema = %s"
            " ORDER BY table_name, ordinal_position",
            (schema,),
        ):
            if r[0] in tables:
                tables[r[0]]["columns"].append(
                    {
                        "name": r[1],
                        "type": r[2],
                        "length": r[3],
                        "precision": r[4],
                        "notnull": r[5] == "NO",
                        "default": strip(r[6]),
                        "identity": r[8] if r[7] == "YES" else None,
                        "generated": strip(r[10]) if r[9] == "ALWAYS" else None,
                        "collation": r[11],
                    }
                )
        # every index, with the constraint it backs (None for a plain CREATE INDEX)
        for table, index, definition, unique, primary, backs, columns, where in pg.execute(
            "SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisunique,"
            " x.indisprimary, c.conname,"
            " ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o)"
            "       LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n"
            "       ORDER BY k.o),"
            " pg_get_expr(x.indpred, x.indrelid)"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_class t ON t.oid = x.indrelid"
            " LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid"
            "  AND c.contype IN ('p', 'u', 'x')"
            " WHERE t.relnamespace = %s::regnamespace",
            (schema,),
        ):
            if table in tables:
                tables[table]["indexes"].append(
                    {
                        "name": index,
                        "definition": strip(definition),
                        "unique": unique,
                        "primary": primary,
                        "constraint": backs,
                        "columns": list(columns),
                        "where": strip(where),
                    }
                )
        for table, name, kind, definition, columns in pg.execute(
            "SELECT t.relname, c.conname, c.contype, pg_get_constraintdef(c.oid),"
            " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
            "       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n"
            "       ORDER BY k.o)"
            " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " WHERE t.relnamespace = %s::regnamespace AND c.contype IN ('p', 'u', 'c', 'f', 'x')",
            (schema,),
        ):
            if table in tables:
                tables[table]["constraints"].append(
                    {
                        "name": name,
                        "kind": kind,
                        "definition": strip(definition),
                        "columns": list(columns),
                    }
                )
        for table in tables.values():
            table["indexes"].sort(key=lambda i: i["name"])
            table["constraints"].sort(key=lambda c: (c["kind"], c["name"]))
        views = [
            ("view", name, name)
            for (name,) in pg.execute(
                "SELECT table_name FROM information_schema.views WHERE table_schema = %s",
                (schema,),
            )
        ]
        triggers = [
            ("trigger", name, table)
            for name, table in pg.execute(
                "SELECT DISTINCT trigger_name, event_object_table FROM information_schema.triggers"
                " WHERE trigger_schema = %s",
                (schema,),
            )
        ]
    return {"backend": "postgres", "tables": tables, "others": sorted(views + triggers)}


# -- what both backends must agree on ------------------------------------------------------------


def normal_type(declared: str) -> str:
    """A column type reduced to its kind, SQLite's affinity rules applied to both backends."""
    text = declared.upper()
    if "INT" in text:
        return "integer"  # INTEGER, BIGINT, SMALLINT
    if any(word in text for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(word in text for word in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "real"  # REAL, DOUBLE PRECISION
    if "BLOB" in text or "BYTEA" in text or not text:
        return "blob"
    if "BOOL" in text:
        return "integer"  # SQLite has no booleans: 0/1
    return text.lower()


def normal_default(value: str | None) -> str | None:
    """`'x'::text`, `(0)::double precision` and `0` are one default."""
    if value is None:
        return None
    text = value.strip()
    text = re.sub(r"::[a-z ]+(\[\])?", "", text, flags=re.IGNORECASE)
    while text.startswith("(") and text.endswith(")") and _balanced(text, 0) == len(text):
        text = text[1:-1].strip()
    return text


def _words(expression: str, columns: set[str]) -> frozenset[str]:
    """The table's columns an expression mentions (string literals ignored)."""
    plain = re.sub(r"'(?:[^']|'')*'", "''", expression)
    return frozenset(w.strip('"').lower() for w in re.findall(r'"[^"]+"|\w+', plain)) & columns


def substance(d: Dump) -> Dump:
    """What SQLite and PostgreSQL must agree on, with the backends' spellings normalised."""
    out: dict[str, Any] = {}
    for name, table in d["tables"].items():
        names = [c["name"] for c in table["columns"]]
        lower = {n.lower() for n in names}
        if d["backend"] == "sqlite":
            primary = [
                c["name"] for c in sorted(table["columns"], key=lambda c: c["pk"]) if c["pk"]
            ]
            columns = {
                c["name"]: (
                    normal_type(c["type"]),
                    c["notnull"] or c["pk"] > 0,  # a key is never NULL (SQLite's quirk aside)
                    normal_default(c["default"]),
                )
                for c in table["columns"]
            }
            uniques = sorted(
                tuple(k[0] for k in i["columns"]) for i in table["indexes"] if i["origin"] == "u"
            )
            checks = Counter(_words(expr, lower) for _, expr in table["checks"])
            named_checks = sorted(n for n, _ in table["checks"] if n)
            indexes = {
                i["name"]: (
                    tuple(k[0] for k in i["columns"]),
                    i["unique"],
                    None if i["where"] is None else _words(i["where"], lower),
                )
                for i in table["indexes"]
                if i["origin"] == "c"
            }
            foreign = sorted((f[0], f[1], f[2]) for f in table["foreign_keys"])
        else:
            cons = table["constraints"]
            [primary] = [c["columns"] for c in cons if c["kind"] == "p"] or [[]]
            columns = {
                c["name"]: (
                    normal_type(c["type"]),
                    c["notnull"],
                    normal_default(c["default"]),
                )
                for c in table["columns"]
            }
            uniques = sorted(tuple(c["columns"]) for c in cons if c["kind"] == "u")
            check_cons = [c for c in cons if c["kind"] == "c"]
            checks = Counter(frozenset(map(str.lower, c["columns"])) for c in check_cons)
            # a CHECK PostgreSQL named itself (<table>_<column>_check) was unnamed in the source
            named_checks = sorted(
                c["name"]
                for c in check_cons
                if not re.fullmatch(rf"{re.escape(name)}_\w*check\d*", c["name"])
            )
            indexes = {
                i["name"]: (
                    tuple(i["columns"]),
                    i["unique"],
                    None if i["where"] is None else _words(i["where"], lower),
                )
                for i in table["indexes"]
                if i["constraint"] is None
            }
            foreign = []
            for c in cons:
                if c["kind"] == "f":
                    match = re.search(r"REFERENCES (\w+)\(([^)]*)\)", c["definition"])
                    assert match, c
                    target = [t.strip().strip('"') for t in match.group(2).split(",")]
                    for here, there in zip(c["columns"], target, strict=True):
                        foreign.append((match.group(1), here, there))
            foreign.sort()
        out[name] = {
            "columns": columns,
            "column_order": names,
            "primary_key": list(primary),
            "unique": uniques,
            "checks": sorted((sorted(k), n) for k, n in checks.items()),
            "named_checks": named_checks,
            "indexes": indexes,
            "foreign_keys": foreign,
        }
    return out
