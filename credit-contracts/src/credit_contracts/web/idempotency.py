"""Idempotency keys: a retried request gets the first answer; a reused key is refused.

    answer = requests.once(key, Request("POST", "/api/customers", body), perform)

A key is kept with a fingerprint of the request it was first used for (method, path and the
body as JSON with sorted keys, so spacing and key order do not matter) and with the answer
that request got. Then, as Stripe and the IETF draft on the Idempotency-Key header do:

- the same key with the same request answers the stored answer again (status and body, and
  `Idempotent-Replayed: true`) without executing anything;
- the same key with a different request is refused (422) and executes nothing;
- concurrent repeats all get one answer: the command's id derives from the key, so the engine
  executes it once whichever request gets there first, and the first answer stored wins.

Answers of 4xx from the domain (a rejected command) are stored too: a retry must not turn a
refusal into a success because the world changed in between. Failures of the server (5xx)
are not: the key stays open and a retry runs the request again (the command still executes at
most once). Keys live in the store beside the log, in the table `cc_http_requests`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from credit_contracts.sqlfiles import queries
from procession import Store

SQL = queries(__name__.rpartition(".")[0], "requests")


class KeyReused(Exception):
    """An idempotency key sent again with a different request (answered 422)."""


class Request(msgspec.Struct, frozen=True):
    method: str
    path: str
    body: Any = None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            [self.method, self.path, self.body], sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> str:
        return f"{self.method} {self.path}"


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: dict[str, Any]
    replayed: bool = False


class Stored(msgspec.Struct, frozen=True):
    fingerprint: str
    request: str
    status: int | None
    response: str | None


class Requests:
    """The idempotency keys of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.transaction() as tx:
            tx.sql(SQL["create"])

    def once(self, key: str, request: Request, perform: Callable[[], Answer]) -> Answer:
        """`perform` at most once per key, its answer stored and replayed."""
        fingerprint = request.fingerprint()
        stored = self._claim(key, fingerprint, request.describe())
        if stored.fingerprint != fingerprint:
            raise KeyReused(
                f"the Idempotency-Key {key!r} was already used for another request "
                f"({stored.request}, with another body): use a new key for a new request"
            )
        if stored.status is not None:
            return replay(stored)
        answer = perform()
        if answer.status >= 500:
            return answer
        return self._answer(key, answer)

    def _claim(self, key: str, fingerprint: str, request: str) -> Stored:
        now = datetime.now(UTC).isoformat()
        params = {"key": key, "fingerprint": fingerprint, "request": request, "created_at": now}
        with self.store.transaction() as tx:
            tx.sql(SQL["claim"], params)
            return Stored(*tx.sql(SQL["find"], {"key": key})[0])

    def _answer(self, key: str, answer: Answer) -> Answer:
        """Store the answer unless a concurrent repeat stored its own first: then that one."""
        response = json.dumps(answer.body, default=str)
        params = {"key": key, "status": answer.status, "response": response}
        with self.store.transaction() as tx:
            tx.sql(SQL["answer"], params)
            stored = Stored(*tx.sql(SQL["find"], {"key": key})[0])
        if stored.response == response and stored.status == answer.status:
            return answer
        return replay(stored)


def replay(stored: Stored) -> Answer:
    assert stored.status is not None and stored.response is not None
    return Answer(stored.status, json.loads(stored.response), replayed=True)
