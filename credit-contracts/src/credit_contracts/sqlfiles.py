"""Named SQL statements kept in `.sql` files beside the code that runs them.

    queries("credit_contracts.views", "customer_summary")["insert_customer"]

A file is a sequence of `-- name: x` sections; comment lines inside a section are dropped.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def queries(package: str, name: str) -> dict[str, str]:
    """The named statements of `<package>/<name>.sql`."""
    text = (resources.files(package) / f"{name}.sql").read_text()
    parts = _NAME.split(text)
    found = {}
    for key, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        found[key] = "\n".join(lines).strip().rstrip(";")
    return found
