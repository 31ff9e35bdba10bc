"""The distributions as a user gets them (issue 11): each built as a wheel and as an sdist,
each installed into a fresh virtualenv, and used from there, never from this source tree.

- `procession` alone (core dependency msgspec only) runs the README's engine example on
  SQLite without FastAPI, uvicorn, Rich or Typer installed, let alone imported, and
  `python -m procession --version` answers;
- `credit-contracts`, installed beside it, runs `credit-contracts demo --contracts 200`
  to the end (its SQL and the engine's migrations come from the installed packages).

Building uses this virtualenv's setuptools (`--no-isolation`: no download of build
tools); installing takes the dependencies from the package index, as a user's pip does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "credit-contracts"
KINDS = ("wheel", "sdist")
HEAVY = ("fastapi", "uvicorn", "rich", "typer", "starlette", "psycopg", "prometheus_client")

pytestmark = pytest.mark.distribution


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_copy(into: Path) -> Path:
    """The repository's files as a clean checkout has them (tracked, and new files not
    ignored): a build from the working tree would pick up a `build/` folder left by an
    earlier build, and with it files the package data no longer names."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both projects built once, from a clean copy: two wheels and two sdists."""
    out = tmp_path_factory.mktemp("dist")
    source = clean_copy(tmp_path_factory.mktemp("source"))
    for project in (source, source / REFERENCE.name):
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, project, cwd=out)
    return out


def built(dists: Path, name: str, kind: str) -> Path:
    pattern = f"{name}-*.whl" if kind == "wheel" else f"{name}-*.tar.gz"
    [found] = sorted(dists.glob(pattern))
    return found


@pytest.fixture(params=KINDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A fresh virtualenv (no site packages) and an empty working directory outside the
    source tree: what it imports can only come from what was installed into it."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    work = tmp_path / "work"
    work.mkdir()
    yield request.param, env_dir / "bin", work


def readme_engine_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The engine in", 1)[1]
    match = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, "the README's engine section has a python block"
    return match.group(1)


CHECK_IMPORTS = """
import sys
heavy = {heavy!r}
imported = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
assert not imported, f"the engine example imported {{imported}}"
print("imports-ok")
"""


def test_the_engine_alone_then_the_reference_system(
    dists: Path, fresh: tuple[str, Path, Path]
) -> None:
    kind, bin_, work = fresh
    pip = (bin_ / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check")
    run(*pip, built(dists, "procession", kind), cwd=work)

    installed = run(bin_ / "python", "-m", "pip", "list", "--format=json", cwd=work)
    names = {p["name"].lower() for p in json.loads(installed)}
    assert not names & {"fastapi", "uvicorn", "rich", "typer", "psycopg"}, names

    example = work / "example.py"
    example.write_text(readme_engine_example() + CHECK_IMPORTS.format(heavy=HEAVY))
    out = run(bin_ / "python", example, cwd=work)
    assert "imports-ok" in out
    version = run(bin_ / "python", "-m", "procession", "--version", cwd=work)
    assert re.fullmatch(r"procession \d+\.\d+\.\d+\S*\n", version), version
    where = run(bin_ / "python", "-c", "import procession; print(procession.__file__)", cwd=work)
    assert str(ROOT) not in where  # the installed copy, not the source tree

    # the reference system beside it; its procession is the one just built (--find-links)
    run(*pip, "--find-links", dists, built(dists, "credit_contracts", kind), cwd=work)
    db = f"sqlite:///{work / 'demo.db'}"
    out = run(
        bin_ / "credit-contracts", "demo", "--contracts", "200", "--db", db, "--json", cwd=work
    )
    report = json.loads(out)
    assert report["contracts"] == 200
    assert report["batch_status"] == "completed"
    assert report["still_pending"] == 0
    assert report["reconfirmed"] + report["terminated"] == report["affected"] > 0
    assert report["matches_expected"] is True
