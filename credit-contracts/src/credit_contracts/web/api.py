"""The HTTP API: commands in, read models out, one route per question.

    app = create_app("sqlite:///contracts.db", clock="virtual")

Writes execute a command with `Runtime.send` and answer once the read models show it; the
batches and the contracts' re-confirmation then move on whenever the runtime runs
(`POST /api/run`, the `--worker` thread, or separate worker processes on PostgreSQL). A
write sent with an `Idempotency-Key` header executes once however often it is retried.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, BaseModel

from credit_contracts import __version__, validation
from credit_contracts.app import customer_batches, open_system
from credit_contracts.domain.contract import STATUSES
from credit_contracts.domain.customer import RATINGS
from credit_contracts.domain.messages import (
    ChangeCustomerCreditRating,
    OpenContract,
    RegisterCustomer,
    SignContract,
)
from credit_contracts.processes.credit_change import batch_id_for
from credit_contracts.simulator import SimulationConfig
from credit_contracts.views.contracts_by_customer import ContractRow, contracts_of, get_contract
from credit_contracts.views.customer_summary import CustomerSummary, customer_summary, customers
from credit_contracts.views.timeline import timeline
from credit_contracts.web import errors, openapi, shapes
from credit_contracts.web import system as reads
from credit_contracts.web.bodies import (
    ID_PATTERN,
    KEY_PATTERN,
    BatchChange,
    NewContract,
    NewCustomer,
    RatingChange,
    RunRequest,
    Throttle,
)
from credit_contracts.web.idempotency import Request as Fingerprint
from credit_contracts.web.metrics import metrics_router
from credit_contracts.web.security import RequestSafety, Security
from credit_contracts.web.system import ITEM_STATUSES, ClockKind, WebSystem
from procession import (
    BatchProgress,
    BatchRefused,
    NotFound,
    RateLimit,
    derived_id,
    iso,
    new_id,
    operations,
)
from procession.errors import ConfigurationError

api = APIRouter(prefix="/api")
pages = APIRouter()


def system_of(request: Request) -> WebSystem:
    system: WebSystem = request.app.state.system
    return system


System = Annotated[WebSystem, Depends(system_of)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        pattern=KEY_PATTERN,
        description="Send a write again with the same key: it executes once and is answered "
        "with the first answer; the same key with another request is refused (422).",
    ),
]
CustomerId = Annotated[
    str, Path(json_schema_extra={"pattern": ID_PATTERN}), AfterValidator(validation.entity_id)
]
ContractId = Annotated[
    str, Path(json_schema_extra={"pattern": ID_PATTERN}), AfterValidator(validation.entity_id)
]
BatchId = Annotated[
    str,
    Path(json_schema_extra={"pattern": validation.BATCH_ID_PATTERN}),
    AfterValidator(validation.batch_id),
]
Limit = Annotated[int, Query(ge=1, le=500)]


def require_customer(system: WebSystem, customer_id: str) -> CustomerSummary:
    summary = customer_summary(system.runtime.store, customer_id)
    if summary is None:
        raise NotFound(f"customer {customer_id} does not exist")
    return summary


def require_contract(system: WebSystem, contract_id: str) -> ContractRow:
    row = get_contract(system.runtime.store, contract_id)
    if row is None:
        raise NotFound(f"contract {contract_id} does not exist")
    return row


def next_after(ids: list[str], limit: int) -> str | None:
    """The cursor of the next page: the last id of a full page."""
    return ids[-1] if len(ids) == limit else None


# -- writing: every write may carry an Idempotency-Key -------------------------------------


def write(
    system: WebSystem,
    request: Request,
    key: str | None,
    body: BaseModel | None,
    status: int,
    perform: Callable[[], dict[str, Any]],
) -> JSONResponse:
    """Perform a write and answer `status`; with a key, at most once (see idempotency)."""
    if key is None:
        return JSONResponse(perform(), status_code=status)
    fingerprint = Fingerprint(request.method, request.url.path, dumped(body))
    answer = system.requests.once(key, fingerprint, lambda: errors.answer_of(perform, status))
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def dumped(body: BaseModel | None) -> Any:
    return None if body is None else body.model_dump(mode="json")


def new_or_given(given: str | None, key: str | None, kind: str) -> str:
    """The id of a new entity: the client's, else derived from the idempotency key (so a
    retried create makes the same entity), else new."""
    if given is not None:
        return given
    return derived_id("http", kind, key) if key else new_id()


# -- customers -------------------------------------------------------------------------------


@api.post("/customers", status_code=201)
def register_customer(
    body: NewCustomer, request: Request, system: System, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    def perform() -> dict[str, Any]:
        customer_id = new_or_given(body.id, idempotency_key, "customer")
        command = RegisterCustomer(customer_id=customer_id, name=body.name, rating=body.rating)
        result = system.execute(command, idempotency_key)
        summary = require_customer(system, customer_id)
        return {**shapes.customer(summary), "command": shapes.command(result)}

    return write(system, request, idempotency_key, body, 201, perform)


@api.get("/customers")
def list_customers(system: System, after: str | None = None, limit: Limit = 100) -> dict[str, Any]:
    page = customers(system.runtime.store, after, limit)
    return {
        "customers": [shapes.customer(summary) for summary in page],
        "next": next_after([s.customer_id for s in page], limit),
        "total": reads.count(system.runtime.store, "SELECT COUNT(*) FROM cc_customer_summary"),
    }


@api.get("/customers/{customer_id}")
def show_customer(customer_id: CustomerId, system: System) -> dict[str, Any]:
    summary = require_customer(system, customer_id)
    batches = customer_batches(system.runtime, customer_id)
    return {**shapes.customer(summary), "batches": [shapes.batch(b) for b in batches]}


@api.post("/customers/{customer_id}/rating", status_code=202)
def change_rating(
    customer_id: CustomerId,
    body: RatingChange,
    request: Request,
    system: System,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Accepted: the rating has changed; the batch over the contracts runs from here on."""

    def perform() -> dict[str, Any]:
        command = ChangeCustomerCreditRating(customer_id=customer_id, new_rating=body.rating)
        result = system.execute(command, idempotency_key)
        summary = require_customer(system, customer_id)
        return {
            **shapes.customer(summary),
            "batch_id": batch_id_for(customer_id, summary.rating_changes),
            "command": shapes.command(result),
        }

    return write(system, request, idempotency_key, body, 202, perform)


@api.get("/customers/{customer_id}/contracts")
def list_contracts(
    customer_id: CustomerId,
    system: System,
    status: Annotated[str | None, Query(pattern=f"^({'|'.join(STATUSES)})$")] = None,
    after: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    require_customer(system, customer_id)
    page = contracts_of(system.runtime.store, customer_id, status, after, limit)
    return {
        "customer_id": customer_id,
        "contracts": [shapes.contract(row) for row in page],
        "next": next_after([row.contract_id for row in page], limit),
        "total": reads.count(
            system.runtime.store,
            "SELECT COUNT(*) FROM cc_contracts WHERE customer_id = :customer_id"
            + ("" if status is None else " AND status = :status"),
            {"customer_id": customer_id} | ({} if status is None else {"status": status}),
        ),
    }


# -- contracts -------------------------------------------------------------------------------


@api.post("/contracts", status_code=201)
def open_contract(
    body: NewContract, request: Request, system: System, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    def perform() -> dict[str, Any]:
        contract_id = new_or_given(body.id, idempotency_key, "contract")
        command = OpenContract(
            contract_id=contract_id, customer_id=body.customer_id, title=body.title
        )
        result = system.execute(command, idempotency_key)
        row = require_contract(system, contract_id)
        return {**shapes.contract(row), "command": shapes.command(result)}

    return write(system, request, idempotency_key, body, 201, perform)


@api.post("/contracts/{contract_id}/sign")
def sign_contract(
    contract_id: ContractId,
    request: Request,
    system: System,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The customer re-signs a pending contract; re-confirmation follows when processes run."""

    def perform() -> dict[str, Any]:
        result = system.execute(SignContract(contract_id=contract_id), idempotency_key)
        row = require_contract(system, contract_id)
        return {**shapes.contract(row), "command": shapes.command(result)}

    return write(system, request, idempotency_key, None, 200, perform)


@api.get("/contracts/{contract_id}")
def show_contract(contract_id: ContractId, system: System) -> dict[str, Any]:
    row = require_contract(system, contract_id)
    entries = timeline(system.runtime.store, contract_id)
    return {**shapes.contract(row), "timeline": [shapes.timeline_entry(e) for e in entries]}


# -- batches and running ---------------------------------------------------------------------


@api.get("/batches")
def list_batches(system: System, after: str | None = None, limit: Limit = 50) -> dict[str, Any]:
    """The newest batches first; `next` is the `after` of the next page (null at the end)."""
    page = system.batches(limit, after)
    return {
        "batches": [shapes.batch(progress) for progress in page],
        "total": reads.count(system.runtime.store, "SELECT COUNT(*) FROM batches"),
        "next": next_after([progress.batch_id for progress in page], limit),
    }


@api.get("/batches/{batch_id}")
def show_batch(batch_id: BatchId, system: System) -> dict[str, Any]:
    progress = system.runtime.progress(batch_id)
    if progress is None:
        raise NotFound(f"batch {batch_id} does not exist")
    return {
        **shapes.batch(progress),
        "supersedes": reads.superseded(system.runtime.store, batch_id),
    }


@api.get("/batches/{batch_id}/items")
def list_batch_items(
    batch_id: BatchId,
    system: System,
    status: Annotated[str | None, Query(pattern=f"^({'|'.join(ITEM_STATUSES)})$")] = None,
    after: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """A batch's items (targets) by id, of one status or all, with how many there are."""
    if system.runtime.progress(batch_id) is None:
        raise NotFound(f"batch {batch_id} does not exist")
    page, total = reads.batch_items(system.runtime.store, batch_id, status, after, limit)
    return {
        "batch_id": batch_id,
        "items": [shapes.batch_item(row) for row in page],
        "next": next_after([row[0] for row in page], limit),
        "total": total,
    }


def controlled(change: Callable[[], BatchProgress]) -> JSONResponse:
    """A batch control's answer: the batch now, or 409 when its state refuses the change."""
    try:
        progress = change()
    except BatchRefused as exc:
        return errors.error(409, str(exc), type=type(exc).__name__)
    except ConfigurationError as exc:
        return errors.error(422, str(exc), type=type(exc).__name__)
    return JSONResponse(shapes.batch(progress))


def operator(system: WebSystem) -> str:
    """Who changes a batch over HTTP, for its audit events."""
    return "http:token" if system.security.token is not None else "http"


BatchAction = Callable[..., BatchProgress]
ACTIONS: dict[str, BatchAction] = {
    "pause": operations.pause_batch,
    "resume": operations.resume_batch,
    "cancel": operations.cancel_batch,
}


def batch_action(name: str) -> Callable[..., JSONResponse]:
    action = ACTIONS[name]

    def route(
        batch_id: BatchId,
        system: System,
        body: Annotated[BatchChange | None, Body()] = None,
    ) -> JSONResponse:
        reason = "" if body is None else body.reason
        return controlled(
            lambda: action(system.runtime.store, batch_id, by=operator(system), reason=reason)
        )

    route.__name__ = f"{name}_batch"
    route.__doc__ = {
        "pause": "Stop dispatching; what was dispatched finishes. Pausing twice is a no-op.",
        "resume": "Dispatch again from where the batch stopped.",
        "cancel": "Cancel the items not dispatched yet; dispatched ones finish.",
    }[name]
    return route


for _name in ACTIONS:
    api.post(f"/batches/{{batch_id}}/{_name}")(batch_action(_name))


@api.post("/batches/{batch_id}/throttle")
def throttle_batch(batch_id: BatchId, body: Throttle, system: System) -> JSONResponse:
    """Change `max_in_flight` and/or the rate limit (`rate: null` lifts it)."""
    try:
        rate = RateLimit.parse(body.rate) if body.rate is not None else None
    except ConfigurationError as exc:
        return errors.error(422, str(exc), type=type(exc).__name__)
    unlimited = "rate" in body.model_fields_set and body.rate is None
    return controlled(
        lambda: operations.throttle_batch(
            system.runtime.store,
            batch_id,
            max_in_flight=None if body.max_in_flight is None else int(body.max_in_flight),
            rate_limit=rate,
            unlimited=unlimited,
            by=operator(system),
            reason=body.reason,
        )
    )


# -- operators: parked work, health, stuck work ----------------------------------------------

ParkedId = Annotated[
    str,
    Path(
        json_schema_extra={"pattern": ID_PATTERN},
        description="a parked item's id, as `GET /api/parked` lists it",
    ),
    AfterValidator(validation.entity_id),
]


@api.get("/parked")
def list_parked(system: System) -> dict[str, Any]:
    """Parked deliveries, commands and log consumers (projections, the router)."""
    found = operations.parked(system.runtime.store)
    return {"parked": found, "total": len(found)}


@api.post("/parked/{item_id}/retry")
def retry_parked(item_id: ParkedId, system: System) -> dict[str, Any]:
    """Put parked work back to work now (once its cause is fixed)."""
    if not operations.retry(system.runtime.store, item_id):
        raise NotFound(f"nothing parked is called {item_id}")
    return {"id": item_id, "retried": True}


@api.post("/parked/{item_id}/skip")
def skip_parked(item_id: ParkedId, system: System) -> dict[str, Any]:
    """Drop parked work for good (a consumer moves past the event it failed on)."""
    if not operations.skip(system.runtime.store, item_id):
        raise NotFound(f"nothing parked is called {item_id}")
    return {"id": item_id, "skipped": True}


@api.get("/health")
def health(system: System) -> dict[str, Any]:
    """The log's head, each consumer's checkpoint and lag, the queues and what is parked."""
    return {**reads.health(system.runtime), **system.clock_state()}


@api.get("/stuck")
def stuck(
    system: System,
    pending_days: Annotated[float, Query(ge=0, le=3660)] = 14,
    stalled_minutes: Annotated[float, Query(ge=0, le=525600)] = 60,
    contracts_after: str | None = None,
    batches_after: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """Contracts pending for more than `pending_days` (since their last change, by the
    runtime's clock), and live batches where no item has finished for `stalled_minutes`
    (or, none finished yet, since they started). Each list is paged on its own cursor."""
    store, now = system.runtime.store, system.runtime.clock.now()
    rows, contracts_total = reads.stuck_contracts(
        store, iso(now - pending_days * reads.DAY), contracts_after, limit
    )
    batches, batches_total = reads.stalled_batches(
        store, now - stalled_minutes * 60, batches_after, limit
    )
    stalled = []
    for batch_id, finished_at in batches:
        progress = system.runtime.progress(batch_id)
        if progress is not None:
            stalled.append(
                {**shapes.batch(progress), "last_finished_at": shapes.moment(finished_at)}
            )
    return {
        **system.clock_state(),
        "pending_days": pending_days,
        "stalled_minutes": stalled_minutes,
        "contracts": {
            "items": [shapes.contract(ContractRow(*row)) for row in rows],
            "next": next_after([row[0] for row in rows], limit),
            "total": contracts_total,
        },
        "batches": {
            "items": stalled,
            "next": next_after([b[0] for b in batches], limit),
            "total": batches_total,
        },
    }


@api.post("/run")
def run(system: System, body: Annotated[RunRequest | None, Body()] = None) -> dict[str, Any]:
    """Process until idle; on a virtual clock, up to `advance_days` of process time."""
    return system.run(None if body is None else body.advance_days)


@api.get("/system")
def describe(system: System) -> dict[str, Any]:
    """The clock, and the vocabularies the dashboard's forms offer."""
    return {
        **system.clock_state(),
        "ratings": list(RATINGS),
        "statuses": list(STATUSES),
        "auth": system.security.describe(),
    }


# -- the dashboard ---------------------------------------------------------------------------


STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@pages.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> str:
    return (resources.files("credit_contracts.web") / "dashboard.html").read_text()


@pages.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFound(f"no such file: /static/{name}")
    text = (resources.files("credit_contracts.web") / name).read_text()
    return Response(text, media_type=STATIC[name])


# -- composition -----------------------------------------------------------------------------


def create_app(
    db_url: str,
    *,
    clock: ClockKind = "system",
    simulation: SimulationConfig | None = None,
    worker: bool = False,
    security: Security | None = None,
) -> FastAPI:
    """The API and dashboard over the store at `db_url`.

    `clock="virtual"` keeps process time in the store and moves it only on `POST /api/run`;
    `simulation` adds simulated customers who re-sign (or not); `worker=True` runs the
    runtime in a background thread, so batches move without anyone pressing "Run" (on a
    virtual clock it does what is due now: only `POST /api/run` moves time). `security`
    says who may call (the default: no token, loopback host names only; see security.py).
    """
    if clock not in ("system", "virtual"):
        raise ValueError(f"clock must be 'system' or 'virtual', not {clock!r}")
    security = security or Security()
    runtime = open_system(db_url, simulation, virtual=clock == "virtual")
    system = WebSystem(runtime, clock, security)
    app = FastAPI(
        title="credit contracts",
        version=__version__,
        lifespan=lifespan(system, worker),
        redoc_url=None,
    )
    app.state.system = system
    errors.install(app)
    app.include_router(api)
    app.include_router(pages)
    app.include_router(metrics_router())  # GET /metrics: Prometheus, the store's figures
    app.add_middleware(RequestSafety, security=security)
    openapi.document(app, security)
    return app


def lifespan(system: WebSystem, worker: bool) -> Any:
    @asynccontextmanager
    async def running(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=system.work_forever, args=(stop,), daemon=True)
        if worker:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if worker:
                thread.join(timeout=10)
            system.close()

    return running
