"""Running the server: the security settings checked, then uvicorn on the app.

`credit-contracts serve` (and `python -m credit_contracts.web`, the same command) calls
`run_server`; tests build the app with `create_app` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import uvicorn

from credit_contracts.simulator import SimulationConfig
from credit_contracts.web.api import create_app
from credit_contracts.web.security import Security, is_loopback, load_token

ANY_ADDRESS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    port: int = 8000
    token_file: str | None = None
    protect_reads: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_body: int = 64 * 1024
    access_log: bool = False

    def security(self) -> Security:
        """The settings as a `Security`; refuses a public address without a token. A
        specific address bound is a host name clients may use."""
        names = {name.lower() for name in self.allowed_hosts}
        if self.host not in ANY_ADDRESS and not is_loopback(self.host):
            names.add(self.host.lower())
        security = Security(
            token=load_token(self.token_file),
            protect_reads=self.protect_reads,
            allowed_hosts=tuple(sorted(names)),
            max_body=self.max_body,
        )
        security.check_bind(self.host)
        return security


def run_server(
    db: str,
    options: Options,
    security: Security,
    *,
    virtual: bool,
    simulation: SimulationConfig | None = None,
    worker: bool = False,
) -> None:
    app = create_app(
        db,
        clock="virtual" if virtual else "system",
        simulation=simulation,
        worker=worker,
        security=security,
    )
    uvicorn.run(app, host=options.host, port=options.port, access_log=options.access_log)
