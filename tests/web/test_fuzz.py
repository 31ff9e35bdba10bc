"""The HTTP API held to its own OpenAPI document by schemathesis, against the real server.

The server runs as in production (`python -m credit_contracts.web`, a SQLite store, a virtual
clock), once with a token (every request carries it) and once without. Schemathesis reads the
server's `/openapi.json` and runs what `schemathesis run --checks all` runs, with every
built-in check on every answer:

- coverage: each operation at each documented boundary, with each kind of invalid input,
  with methods it does not serve (405 and its `Allow` header), without its token;
- fuzzing: generated requests to each operation, valid and invalid;
- stateful: sequences of calls along the links schemathesis infers from the document (a
  customer registered, then read, re-rated, given a contract that is then signed...).

No failure is allowed: no 5xx, every status documented, every answer as documented (status,
content type, headers, body), invalid input refused, valid input accepted, auth enforced.
Afterwards the store must be consistent: positions 1..N, each stream's versions 1..n, only
event types the app registers, each customer and each contract created once.

The run is reproducible (a fixed seed, derandomized generation) and bounded (`BUDGET`). It
drives schemathesis's engine (`schemathesis.engine.from_schema`, what its command line runs):
the engine, not a bare Hypothesis state machine, copes with a server whose state moves on
between the runs of a scenario. (Its pytest plugin's `from_fixture` does not run on pytest 9.2:
it renames nodes through `_nodeid`, which pytest no longer has.)
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs  # schemathesis's validator: Rust's regex dialect
import pytest
import schemathesis
from schemathesis.checks import CHECKS
from schemathesis.engine import Status, events, from_schema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from credit_contracts import validation
from credit_contracts.app import build_app
from credit_contracts.validation import BATCH_ID_PATTERN, ID_PATTERN
from credit_contracts.web.bodies import KEY_PATTERN, NAME_PATTERN, RATING_PATTERN, TEXT_PATTERN
from credit_contracts.web.security import TOKEN_ENV
from procession import open_store
from tests.browser.server import serving

TOKEN = "fuzz-token-0123456789abcdef"
SEED = 20300101


@dataclass(frozen=True)
class Budget:
    examples: int
    """Generated requests per operation in the fuzzing phase."""
    scenarios: int
    """Sequences of calls in the stateful phase."""


BUDGET = {"with a token": Budget(examples=100, scenarios=100), "open": Budget(40, 40)}
"""About 25 and 12 seconds; the coverage phase (about 2 seconds) does not depend on them."""


# -- the one check narrowed --------------------------------------------------------------------


def accepted_unless_key_reused(ctx: Any, response: Any, case: Any) -> bool | None:
    """`positive_data_acceptance`, except for the refused reuse of an Idempotency-Key.

    A request that the schema says is valid, sent with a key already used for another
    request, is refused with 422 (as the IETF draft on the Idempotency-Key header asks): that
    depends on what was sent before, which no schema can say, and the generator draws keys
    from a small pool ("0", "null"...), so they meet often. Every other refusal of valid data
    still fails the check."""
    if response.status_code == 422 and refusal_type(response) == "KeyReused":
        return None
    return positive_data_acceptance(ctx, response, case)


def refusal_type(response: Any) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


@contextmanager
def narrowed_checks() -> Iterator[None]:
    """Every built-in check, `positive_data_acceptance` in its narrowed form (registered for
    the run only: schemathesis keeps its checks in a global registry)."""
    schemathesis.check(accepted_unless_key_reused)
    try:
        yield
    finally:
        CHECKS.unregister(accepted_unless_key_reused.__name__)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run found: failures and errors (each as a readable paragraph) and, for the
    audit, how often each operation answered each status."""

    problems: list[str] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    phases: dict[str, Status] = field(default_factory=dict)

    def take(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished):
            self.scenario(event)
        elif isinstance(event, events.PhaseFinished):
            self.phases[event.phase.name.value] = event.status
        elif isinstance(event, events.NonFatalError):
            self.problems.append(f"error in {event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            self.problems.append(f"fatal error: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            self.problems.extend(f"{f.title}: {f.message}" for f in event.failures)

    def scenario(self, event: events.ScenarioFinished) -> None:
        recorder = event.recorder
        for case_id, interaction in recorder.interactions.items():
            if interaction.response is not None:
                label = recorder.cases[case_id].value.operation.label
                self.statuses[(label, interaction.response.status_code)] += 1
        for checks in recorder.checks.values():
            for check in checks:
                if check.status == Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    self.problems.append(
                        f"[{event.phase.value}] {failure.operation}: {check.name}: "
                        f"{failure.title}\n{failure.message}\n{check.failure_info.code_sample}"
                    )


def fuzz(base: str, headers: dict[str, str], budget: Budget) -> Outcome:
    """`schemathesis run --checks all` on `base`, every phase, within `budget`."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "workers": 1,
            "suppress-health-check": ["too_slow"],
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "generation": {"database": "none", "deterministic": True},
            "phases": {
                "fuzzing": {"generation": {"max-examples": budget.examples}},
                "stateful": {"generation": {"max-examples": budget.scenarios}},
            },
        }
    )
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    outcome = Outcome()
    with narrowed_checks():
        enabled = schema.config.checks_config_for()
        off = [
            name for name in CHECKS.get_all_names() if not enabled.get_by_name(name=name).enabled
        ]
        assert off == ["positive_data_acceptance"]  # replaced by accepted_unless_key_reused
        for event in from_schema(schema).execute():
            outcome.take(event)
    return outcome


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BUDGET))
def test_the_api_keeps_its_documented_contract_under_fuzzing(kind: str, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/store.db"
    token = TOKEN if kind == "with a token" else ""
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    options = ("--clock", "virtual")
    with serving(db_url, tmp_path / "server.log", *options, env={TOKEN_ENV: token}) as base:
        outcome = fuzz(base, headers, BUDGET[kind])
    assert outcome.problems == [], "\n\n".join(outcome.problems)
    phases = {phase: outcome.phases.get(phase) for phase in ("coverage", "fuzzing", "stateful")}
    assert phases == dict.fromkeys(phases, Status.SUCCESS)
    reached = {(label, status) for (label, status) in outcome.statuses if status < 300}
    assert [success for success in CORE if success not in reached] == []
    audit(db_url)
    assert "Traceback" not in (tmp_path / "server.log").read_text()


CORE = [
    ("POST /api/customers", 201),
    ("POST /api/contracts", 201),
    ("POST /api/customers/{customer_id}/rating", 202),
    ("GET /api/customers/{customer_id}", 200),
]
"""Successes the fuzzing must reach (else it only knocked at the door)."""


def audit(db_url: str) -> None:
    """The store after the fuzzing: one log, streams without gaps, known events, ids unique."""
    with open_store(db_url) as store:
        log = list(store.read_all())
    assert [e.position for e in log] == list(range(1, len(log) + 1))
    versions: dict[str, list[int]] = {}
    for event in log:
        versions.setdefault(event.stream_id, []).append(event.version)
    assert {s: v for s, v in versions.items() if v != list(range(1, len(v) + 1))} == {}
    messages = build_app().messages
    assert sorted({e.type for e in log if not messages.knows(e.type)}) == []
    for kind, key in (("CustomerRegistered", "customer_id"), ("ContractOpened", "contract_id")):
        ids = Counter(e.data[key] for e in log if e.type == kind)
        assert ids, f"no {kind} in the log"
        assert [i for i, n in ids.items() if n > 1] == [], kind


# -- what makes the positive checks meaningful -------------------------------------------------


def test_the_documented_patterns_say_exactly_what_the_validator_accepts() -> None:
    """A pattern schemathesis cannot compile (in Rust's dialect) is dropped: it then sends, as
    valid, names the API refuses. A pattern looser or stricter than `validation` makes the
    fuzzing fail where the API is right. (Lone surrogates aside: valid text has none.)"""
    for pattern in (ID_PATTERN, BATCH_ID_PATTERN, KEY_PATTERN, RATING_PATTERN):
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    edges = sorted(  # each end of each run of refused characters, and its neighbours
        {c + step for c in points if refused(c) != refused(c - 1) for step in (-1, 0)} & set(points)
    )
    everywhere = [*range(0xD800), *range(0xE000, 0x10000), *edges, *range(0x10000, 0x110000, 97)]
    for pattern, check in ((NAME_PATTERN, validation.name), (TEXT_PATTERN, validation.title)):
        python = re.compile(pattern)
        rust = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        texts = [f"a{chr(c)}a" for c in everywhere] + TEXTS
        assert [t for t in texts if bool(python.fullmatch(t)) != accepts(check, t)] == []
        texts = [f"a{chr(c)}a" for c in edges] + TEXTS
        assert [t for t in texts if rust.is_valid(t) != accepts(check, t)] == []


SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
TEXTS = [
    *["Ada", "", *SPACES, SPACES + "Ada" + SPACES, "A d a", "a\tb", "a\u2028b", "\u00e9"],
    *["x" * 200, "x" * 201, " " + "x" * 200 + "\n", "x" + " " * 198 + "x", "\ufeffAda"],
    *["\U0001f469\u200d\U0001f4bb", "\u202eevil", "Ada\U000f0001", "\U0010fffd", "\U0001fffe"],
]
"""White space around and inside, lengths, refused characters (in the BMP and beyond)."""


def refused(code: int) -> bool:
    return code >= 0 and validation.refused(chr(code))


def accepts(check: Any, text: str) -> bool:
    try:
        check(text)
    except validation.Invalid:
        return False
    return True
