"""Read models: procession projections writing plain tables with portable SQL.

Each view keeps its statements in a named `.sql` file beside it (`-- name: x` sections), and
offers query functions that read through `Store.transaction(write=False)`.
"""

from __future__ import annotations

from credit_contracts import sqlfiles


def queries(view: str) -> dict[str, str]:
    """The named statements of `views/<view>.sql`."""
    return sqlfiles.queries(__name__, view)
