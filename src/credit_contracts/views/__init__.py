"""Read models: procession projections writing plain tables with portable SQL.

Each view keeps its statements in a named `.sql` file beside it (`-- name: x` sections), and
offers query functions that read through `Store.transaction(write=False)`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def queries(view: str) -> dict[str, str]:
    """The named statements of `views/<view>.sql`."""
    text = (resources.files("credit_contracts.views") / f"{view}.sql").read_text()
    parts = _NAME.split(text)
    found = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        found[name] = "\n".join(lines).strip().rstrip(";")
    return found
