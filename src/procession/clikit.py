"""Running a Typer command line the way procession's tools do: errors as one line, never a
traceback, and with `--json` the error as the one JSON object on stdout too.

    procession worker ...         credit-contracts customers register ...

Exit codes: 0 done, 2 refused (usage error, bad input, a domain rule), 1 unexpected, 130
interrupted (Ctrl-C: `error: interrupted`, and {"error": "interrupted"} with `--json`).

An error message can quote what a user typed or what a store holds: before it reaches the
terminal it is made one line and its control characters are escaped (`visible`, or the
`printable` function a tool passes to `run`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from procession.errors import ProcessionError

INTERRUPTED = 130


def visible(text: str) -> str:
    """Every character Python does not call printable (controls, format characters,
    separators), except the space, as an escape: `\\x1b`, `\\u202e`."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def report(message: str, as_json: bool, printable: Callable[[str], str] = visible) -> None:
    """An error: `error: ...` on stderr and, for scripts, {"error": ...} on stdout."""
    message = printable(one_line(message))
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    sys.stderr.write(f"error: {message}\n")


def wants_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def usage_of(exc: Exception, prog_name: str) -> str:
    ctx = getattr(exc, "ctx", None)
    return str(getattr(ctx, "command_path", "")) or prog_name


def run(
    cli: typer.Typer,
    prog_name: str,
    argv: list[str] | None = None,
    refusals: tuple[type[Exception], ...] = (),
    printable: Callable[[str], str] = visible,
) -> int:
    """Run the command line; return its exit code (the caller exits with it).

    `printable` escapes an error message for the terminal (default: `visible`).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = wants_json(args)
    refused: tuple[type[Exception], ...] = (ProcessionError, ValueError, *refusals)
    command = typer.main.get_command(cli)

    def say(message: str) -> None:
        report(message, as_json, printable)

    try:
        code = command.main(args, prog_name=prog_name, standalone_mode=False)
        if code == INTERRUPTED:  # Typer turns a KeyboardInterrupt into Exit(130), silently
            say("interrupted")
    except TyperException as exc:  # a usage error: no such command, option or value
        code = 2
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command group: its help
            sys.stderr.write(exc.format_message() + "\n")
        else:
            say(f"{exc.format_message()} (see {usage_of(exc, prog_name)} --help)")
    except (typer.Abort, KeyboardInterrupt):
        say("interrupted")
        code = INTERRUPTED
    except refused as exc:
        say(str(exc))
        code = 2
    except Exception as exc:  # the last line of defence: never a traceback
        say(f"unexpected {type(exc).__name__}: {exc}")
        code = 1
    sys.stdout.flush()
    return code if isinstance(code, int) else 0


# -- tables for people ------------------------------------------------------------------------

WIDE = 100_000
"""Wide enough to measure any table at its natural width."""


def cell(value: object) -> Text:
    """Stored text in a table cell: neither markup nor terminal control (None reads `-`)."""
    return Text(visible("-" if value is None else str(value)))


def id_column(table: Table, header: str) -> None:
    """A column of ids: folded on a narrow terminal, never cut (see `print_table`)."""
    table.add_column(header, overflow="fold")


def print_table(table: Table, console: Console | None = None) -> None:
    """Print a table without ever cutting a cell (ids): on a terminal a cell too long for it
    folds onto more lines; elsewhere (a pipe, a file, a test) the table is as wide as its
    cells and title need, whatever COLUMNS says: every cell, every id, on one line."""
    console = console or Console(highlight=False, emoji=False)
    for column in table.columns:
        column.overflow = "fold"  # not "ellipsis": a word too long for its cell goes on
    if not console.is_terminal:
        need = Measurement.get(console, console.options.update_width(WIDE), table).maximum
        title = Text.from_markup(table.title) if isinstance(table.title, str) else Text()
        need = max(need, title.cell_len)
        if need > console.width:
            console = Console(highlight=False, emoji=False, width=need)
    console.print(table)
