"""`python -m credit_contracts.web --db URL --port P [--clock virtual]`: serve API and dashboard."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from credit_contracts.simulator import SimulationConfig
from credit_contracts.web.api import create_app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m credit_contracts.web",
        description="Serve the credit contracts API and dashboard.",
    )
    p.add_argument("--db", required=True, help="store URL: sqlite:///file.db or postgresql://...")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--clock", choices=("system", "virtual"), default="system")
    p.add_argument("--worker", action="store_true", help="run the processes in a background thread")
    p.add_argument(
        "--simulate", action="store_true", help="simulated customers re-sign (or never do)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the simulation")
    p.add_argument("--never-sign", type=float, default=0.1, help="share who never re-sign")
    p.add_argument(
        "--access-log", action="store_true", help="log every request (the dashboard polls)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    simulation = (
        SimulationConfig(seed=args.seed, never_sign=args.never_sign) if args.simulate else None
    )
    app = create_app(args.db, clock=args.clock, simulation=simulation, worker=args.worker)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
