"""credit_contracts: the reference system built on procession.

A customer's credit rating changes; every contract the customer had at that moment is revoked
(a batch, enumerated from a read model behind a position fence), then re-signed and
re-confirmed, or terminated after fourteen days (one long-running process per contract).
`credit_contracts.app.build_app()` wires it all.
"""

__version__ = "0.1.0"
