"""Docs run: every ```python block in README.md and docs/*.md is executed here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in FILES:
        for n, match in enumerate(BLOCK.finditer(path.read_text()), start=1):
            found.append((path.name, n, match.group(1)))
    return found


@pytest.mark.parametrize(("name", "n", "code"), blocks(), ids=lambda v: str(v)[:30])
def test_python_block_runs(name: str, n: int, code: str) -> None:
    exec(compile(code, f"{name}#block{n}", "exec"), {"__name__": f"docs_{n}"})


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:8]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
