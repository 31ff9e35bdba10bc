"""procession.clikit: Ctrl-C in any command is `error: interrupted` (and the JSON object with
--json), exit 130; an error message never writes a control character to the terminal."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
import typer

from procession import clikit

app = typer.Typer()


@app.command()
def wait(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    raise KeyboardInterrupt


@app.command()
def fail(message: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    raise ValueError(message)


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_is_reported_with_exit_130(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    code = clikit.run(app, "tool", ["wait", *(["--json"] if as_json else [])])
    out, err = capsys.readouterr()
    assert code == 130
    assert err == "error: interrupted\n"
    assert (json.loads(out) if as_json else out) == ({"error": "interrupted"} if as_json else "")


def test_an_error_message_is_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = clikit.run(app, "tool", ["fail", "bad\x1b]0;x\x07 value\n\u202etxt", "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err == "error: bad\\x1b]0;x\\x07 value \\u202etxt\n"
    assert json.loads(out) == {"error": "bad\\x1b]0;x\\x07 value \\u202etxt"}


def test_a_tool_can_escape_its_own_way(capsys: pytest.CaptureFixture[str]) -> None:
    clikit.run(app, "tool", ["fail", "a\x1bb"], printable=lambda text: text.replace("\x1b", "ESC"))
    assert capsys.readouterr().err == "error: aESCb\n"


def test_visible_keeps_printable_text() -> None:
    assert clikit.visible("Zoë 株式会社 🙂") == "Zoë 株式会社 🙂"
    assert clikit.visible("a\x00b\x9bc\u2028") == "a\\x00b\\x9bc\\u2028"
