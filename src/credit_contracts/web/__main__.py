"""`python -m credit_contracts.web` (the same as `credit-contracts serve`): API and dashboard."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from credit_contracts.simulator import SimulationConfig
from credit_contracts.web.api import create_app
from credit_contracts.web.security import TOKEN_ENV, InsecureConfiguration, Security, load_token

MAX_BODY = 64 * 1024


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m credit_contracts.web",
        description="Serve the credit contracts API and dashboard (see docs/security.md).",
    )
    p.add_argument("--db", required=True, help="store URL: sqlite:///file.db or postgresql://...")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"address to bind (a non-loopback one needs a token: ${TOKEN_ENV} or --token-file)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--clock", choices=("system", "virtual"), default="system")
    p.add_argument("--worker", action="store_true", help="run the processes in a background thread")
    p.add_argument(
        "--simulate", action="store_true", help="simulated customers re-sign (or never do)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the simulation")
    p.add_argument("--never-sign", type=float, default=0.1, help="share who never re-sign")
    p.add_argument("--token-file", help=f"file holding the API token (else ${TOKEN_ENV})")
    p.add_argument("--protect-reads", action="store_true", help="reads need the token too")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients use to reach this server (repeatable; loopback names always)",
    )
    p.add_argument("--max-body", type=int, default=MAX_BODY, help="largest request body, bytes")
    p.add_argument(
        "--access-log", action="store_true", help="log every request (the dashboard polls)"
    )
    return p


def serve(
    db: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    clock: str = "system",
    worker: bool = False,
    simulation: SimulationConfig | None = None,
    token_file: str | None = None,
    protect_reads: bool = False,
    allowed_hosts: Sequence[str] = (),
    max_body: int = MAX_BODY,
    access_log: bool = False,
) -> None:
    """Check the security settings, open the store, and serve until interrupted."""
    security = Security(
        token=load_token(token_file),
        protect_reads=protect_reads,
        allowed_hosts=tuple(name.lower() for name in allowed_hosts),
        max_body=max_body,
    )
    security.check_bind(host)
    if host not in ("0.0.0.0", "::") and host not in security.allowed_hosts:
        security = Security(
            token=security.token,
            protect_reads=protect_reads,
            allowed_hosts=(*security.allowed_hosts, host.lower()),
            max_body=max_body,
        )
    app = create_app(
        db,
        clock=clock,
        simulation=simulation,
        worker=worker,
        security=security,  # type: ignore[arg-type]
    )
    uvicorn.run(app, host=host, port=port, access_log=access_log)


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    simulation = (
        SimulationConfig(seed=args.seed, never_sign=args.never_sign) if args.simulate else None
    )
    try:
        serve(
            args.db,
            host=args.host,
            port=args.port,
            clock=args.clock,
            worker=args.worker,
            simulation=simulation,
            token_file=args.token_file,
            protect_reads=args.protect_reads,
            allowed_hosts=args.allowed_host,
            max_body=args.max_body,
            access_log=args.access_log,
        )
    except InsecureConfiguration as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
