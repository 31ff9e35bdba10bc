"""The HTTP API and the dashboard of the reference system (FastAPI, one static page).

python -m credit_contracts.web --db sqlite:///contracts.db --port 8000 --clock virtual
"""

from __future__ import annotations

from credit_contracts.web.api import create_app

__all__ = ["create_app"]
