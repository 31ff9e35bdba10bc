"""Docs run: every ```python block in README.md and docs/ (recursively) is executed here, and
the documentation site builds with `mkdocs build --strict`.

A page's blocks run in order in one namespace, like a notebook: a tutorial defines its
messages in one block and uses them in the next. Blocks that must not run use another fence
(```text, ```console, ```sh).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FILES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
DIRECTIVE = re.compile(r"^::: ([\w.]+)$", re.MULTILINE)


def name_of(path: Path) -> str:
    return str(path.relative_to(ROOT))


def pages_with_code() -> list[Path]:
    return [path for path in FILES if BLOCK.search(path.read_text())]


@pytest.mark.parametrize("path", pages_with_code(), ids=name_of)
def test_python_blocks_run(path: Path) -> None:
    """Each page's blocks, in order, in one namespace (a fresh one per page)."""
    namespace = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    for n, match in enumerate(BLOCK.finditer(path.read_text()), start=1):
        exec(compile(match.group(1), f"{name_of(path)}#block{n}", "exec"), namespace)


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:8]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_the_readme_engine_example_is_forty_lines_at_most() -> None:
    section = (ROOT / "README.md").read_text().split("## The engine in forty lines", 1)[1]
    match = BLOCK.search(section)
    assert match, "the README's engine section has a python block"
    lines = match.group(0).count("\n") + 1  # the fences included
    assert lines <= 40, f"the engine example is {lines} lines"


def test_every_public_name_has_an_api_reference_entry() -> None:
    import procession

    documented = {
        name
        for path in (DOCS / "reference" / "api").glob("*.md")
        for name in DIRECTIVE.findall(path.read_text())
    }
    missing = [
        name
        for name in procession.__all__
        if f"procession.{name}" not in documented and name != "operations"
    ]
    assert not missing, f"procession.__all__ names missing from docs/reference/api: {missing}"
    assert "procession.operations" in documented


def test_every_command_line_is_in_the_cli_reference() -> None:
    typer_main = pytest.importorskip("typer.main")
    from credit_contracts.cli import cli as reference_cli
    from procession.cli import cli as engine_cli

    page = (DOCS / "reference" / "cli.md").read_text()

    def commands(group: object, prefix: str) -> list[tuple[str, object]]:
        subs = getattr(group, "commands", None)
        if subs is None:
            return [(prefix, group)]
        return [found for name, sub in subs.items() for found in commands(sub, f"{prefix} {name}")]

    missing = []
    for root, app in (("procession", engine_cli), ("credit-contracts", reference_cli)):
        for path, command in commands(typer_main.get_command(app), root):
            if f"`{path}" not in page:
                missing.append(path)
            options = [
                p.opts[0] for p in getattr(command, "params", []) if p.param_type_name == "option"
            ]
            missing += [f"{path} {o}" for o in options if o != "--help" and f"`{o}" not in page]
    assert not missing, f"not in docs/reference/cli.md: {missing}"


def test_every_http_route_is_in_the_http_reference() -> None:
    pytest.importorskip("fastapi")
    from credit_contracts.web.api import create_app

    app = create_app("sqlite:///:memory:")
    try:
        paths = app.openapi()["paths"]
    finally:
        app.state.system.close()
    page = (DOCS / "reference" / "http.md").read_text()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in operations
        if f"`{method.upper()} {path}`" not in page
    ]
    assert not missing, f"not in docs/reference/http.md: {missing}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: every page in the nav, every link and anchor resolves, and
    the API reference renders from the docstrings without a warning."""
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is not installed (pip install -e '.[dev]')")
        pytest.skip("mkdocs is not installed here")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "tutorials" / "first-batch" / "index.html").exists()
