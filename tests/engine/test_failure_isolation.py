"""One thing fails, the rest goes on: projections and the router parked at their event, the
`on_error` hook and its failure context, per-command-type policies, and batches a process
cannot start. Everything through the public API (Runtime, App, operations)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from procession import (
    App,
    BatchCompleted,
    Command,
    Complete,
    Decision,
    EventInfo,
    Failure,
    Limits,
    Message,
    ProcessionError,
    ProcessManager,
    Projection,
    Retry,
    RetryPolicy,
    Route,
    Runtime,
    Schedule,
    Session,
    SkipMessage,
    StartBatch,
    StepContext,
    Store,
    VirtualClock,
    cli,
    clikit,
    continue_,
    open_store,
    start,
)
from procession.runtime import operations
from tests.support.toy import (
    Account,
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountsByGroup,
    AccountThawed,
    Close,
    Freeze,
    GroupReviewRequested,
    OpenAccount,
    ReviewGroup,
    accounts_of_group,
    build_app,
    freeze_template,
)

# -- a projection that fails on one account -----------------------------------------------------


class Fussy(Projection):
    """Records the accounts opened; raises on `fail_on` while `broken` is set."""

    name = "fussy"

    def __init__(self, fail_on: str = "g1-bad", policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.broken = True
        self.retry_policy = policy or RetryPolicy(max_attempts=1)
        self.failures: list[Failure] = []
        self.on(AccountOpened, self.opened)

    def setup(self, session: Session) -> None:
        session.sql(
            "CREATE TABLE IF NOT EXISTS fussy_seen (account_id TEXT PRIMARY KEY,"
            " position BIGINT NOT NULL)"
        )

    def reset(self, session: Session) -> None:
        session.sql("DELETE FROM fussy_seen")

    def opened(self, session: Session, e: AccountOpened, info: EventInfo) -> None:
        if self.broken and e.account_id == self.fail_on:
            raise RuntimeError(f"cannot project {e.account_id}")
        session.write(
            "INSERT INTO fussy_seen (account_id, position) VALUES (:a, :p)",
            {"a": e.account_id, "p": info.position},
        )

    def on_error(self, failure: Failure) -> Decision:
        self.failures.append(failure)
        return super().on_error(failure)


def seen(store: Store) -> list[str]:
    with store.transaction() as tx:
        return [r[0] for r in tx.sql("SELECT account_id FROM fussy_seen ORDER BY position")]


def open_accounts(rt: Runtime, *ids: str, group: str = "g1") -> dict[str, int]:
    """Open accounts one by one; each one's event position."""
    return {a: rt.send(OpenAccount(account_id=a, group=group)).position for a in ids}


ACCOUNTS = ("g1-a1", "g1-a2", "g1-bad", "g1-a3", "g1-a4")


def process_status(store: Store, process: str) -> dict[str, str]:
    with store.transaction() as tx:
        return dict(
            tx.sql(
                "SELECT instance_id, status FROM process_instances WHERE process = :p",
                {"p": process},
            )
        )


def run_review_with_fussy(rt: Runtime, store: Store) -> dict[str, int]:
    """Five accounts (one the projection cannot take) and a review freezing them all."""
    positions = open_accounts(rt, *ACCOUNTS)
    rt.send(ReviewGroup(group="g1"))
    rt.run_until_idle()  # returns: one parked projection stops nothing else
    return positions


def assert_everything_else_completed(rt: Runtime, store: Store) -> None:
    progress = rt.progress("review-g1-1")
    assert progress is not None
    assert (progress.status, progress.done) == ("completed", len(ACCOUNTS))
    assert process_status(store, "GroupReview") == {"g1": "done"}
    assert process_status(store, "FreezeWatch") == dict.fromkeys(ACCOUNTS, "done")
    checkpoints = rt.checkpoints()
    assert checkpoints["projection:accounts_by_group"] == checkpoints["head"]
    assert checkpoints["router"] == checkpoints["head"]


def test_a_failing_projection_is_parked_at_its_event_and_retried_once_fixed(
    store_url: str,
) -> None:
    app = build_app()
    fussy = app.projection(Fussy())
    assert isinstance(fussy, Fussy)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        positions = run_review_with_fussy(rt, store)

        # parked exactly at the failing event; the events before it in the page are applied
        bad = positions["g1-bad"]
        assert seen(store) == ["g1-a1", "g1-a2"]
        assert rt.checkpoints()["projection:fussy"] == positions["g1-a2"] == bad - 1
        assert operations.parked(store) == [
            {
                "kind": "projection",
                "id": "projection:fussy",
                "position": bad,
                "attempts": 1,
                "error": "RuntimeError: cannot project g1-bad",
            }
        ]
        assert operations.status(store)["parked"] == 1
        # everything else ran to the end, and the runtime says so
        assert_everything_else_completed(rt, store)
        assert rt.quiescent(), "a parked projection waits for an operator: it is not work"
        assert rt.run_until_idle().work == 0

        # the cause is fixed; an operator retries it: it catches up with the log
        fussy.broken = False
        assert operations.retry(store, "projection:fussy")
        assert not operations.retry(store, "projection:fussy"), "nothing left to retry"
        rt.run_until_idle()
        assert operations.parked(store) == []
        assert seen(store) == list(ACCOUNTS)
        checkpoints = rt.checkpoints()
        assert checkpoints["projection:fussy"] == checkpoints["head"]
        assert rt.quiescent()


def test_skipping_a_parked_projection_moves_it_past_its_event(store_url: str) -> None:
    app = build_app()
    app.projection(Fussy())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        run_review_with_fussy(rt, store)
        [parked] = operations.parked(store)
        assert not operations.skip(store, "projection:accounts_by_group"), "not parked"

        assert operations.skip(store, parked["id"])  # the projection is still broken
        assert not operations.skip(store, parked["id"]), "skipping twice finds nothing"
        rt.run_until_idle()
        assert operations.parked(store) == []
        assert seen(store) == ["g1-a1", "g1-a2", "g1-a3", "g1-a4"], "all but the skipped one"
        checkpoints = rt.checkpoints()
        assert checkpoints["projection:fussy"] == checkpoints["head"]
        assert rt.quiescent()


def procession_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """The `procession` command line, in this process: its exit code and JSON answer."""
    capsys.readouterr()
    code = clikit.run(cli.cli, "procession", [*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_command_line_lists_and_skips_a_parked_projection(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = build_app()
    app.projection(Fussy())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        positions = run_review_with_fussy(rt, store)
        code, answer = procession_cli(capsys, "parked", "--db", store_url)
        assert code == 0
        assert answer == {"parked": operations.parked(store)}
        assert [(p["kind"], p["id"], p["position"]) for p in answer["parked"]] == [
            ("projection", "projection:fussy", positions["g1-bad"])
        ]
        code, answer = procession_cli(capsys, "status", "--db", store_url)
        assert (code, answer["parked"]) == (0, 1)
        code, answer = procession_cli(capsys, "skip", "projection:fussy", "--db", store_url)
        assert (code, answer) == (0, {"id": "projection:fussy", "skipped": True})
        code, answer = procession_cli(capsys, "skip", "projection:fussy", "--db", store_url)
        assert code != 0 and "no parked message 'projection:fussy'" in answer["error"]
        rt.run_until_idle()
        assert seen(store) == ["g1-a1", "g1-a2", "g1-a3", "g1-a4"]


def test_a_projection_parked_in_a_later_page_lets_the_others_read_every_page(
    store_url: str,
) -> None:
    app = build_app()
    fussy = app.projection(Fussy(fail_on="g1-a7"))
    assert isinstance(fussy, Fussy)
    accounts = [f"g1-a{i}" for i in range(10)]
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock(), limits=Limits(log_page=2))
        positions = open_accounts(rt, *accounts)
        rt.send(ReviewGroup(group="g1"))
        rt.run_until_idle()
        [parked] = operations.parked(store)
        assert parked["position"] == positions["g1-a7"]
        assert seen(store) == accounts[:7]
        assert rt.checkpoints()["projection:fussy"] == positions["g1-a6"]
        progress = rt.progress("review-g1-1")
        assert progress is not None and (progress.status, progress.done) == ("completed", 10)

        fussy.broken = False
        assert operations.retry(store, parked["id"])
        rt.run_until_idle()
        assert seen(store) == accounts
        checkpoints = rt.checkpoints()
        assert checkpoints["projection:fussy"] == checkpoints["head"]


def test_wait_for_reports_a_parked_projection_and_rebuild_clears_it(store_url: str) -> None:
    app = build_app()
    fussy = app.projection(Fussy())
    assert isinstance(fussy, Fussy)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        positions = open_accounts(rt, *ACCOUNTS)
        with pytest.raises(ProcessionError, match=r"projection:fussy is parked at position"):
            rt.wait_for(positions["g1-a4"], timeout=5)
        rt.wait_for(positions["g1-a2"], timeout=5)  # it got that far
        with pytest.raises(ProcessionError, match="rebuilding fussy stopped at position"):
            rt.rebuild("fussy")  # still broken: a rebuild says where it stopped
        fussy.broken = False
        assert rt.rebuild("fussy") > 0
        assert operations.parked(store) == []
        assert seen(store) == list(ACCOUNTS)
        rt.wait_for(positions["g1-a4"], timeout=5)


@pytest.mark.parametrize("deferred", [False, True], ids=["sql", "write"])
def test_a_projection_failing_on_its_own_sql_is_isolated_too(
    store_url: str, deferred: bool
) -> None:
    """A statement the database refuses (on PostgreSQL it aborts the transaction until rolled
    back) is undone alone: the other consumers of the page commit their work with it. The
    same for a deferred `session.write`, which reaches the database after the handler
    returned: it is sent inside the projection's savepoint, and the event it came from is
    found by applying the page again one event at a time."""

    class Clashing(Fussy):
        name = "clashing"

        def opened(self, session: Session, e: AccountOpened, info: EventInfo) -> None:
            account = "g1-a1" if e.account_id == self.fail_on else e.account_id
            run = session.write if deferred else session.sql
            run(  # the bad account's row clashes with g1-a1's primary key
                "INSERT INTO fussy_seen (account_id, position) VALUES (:a, :p)",
                {"a": account, "p": info.position},
            )

    app = build_app()
    app.projection(Clashing())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        positions = run_review_with_fussy(rt, store)
        [parked] = operations.parked(store)
        assert (parked["id"], parked["position"]) == ("projection:clashing", positions["g1-bad"])
        assert seen(store) == ["g1-a1", "g1-a2"]
        assert_everything_else_completed(rt, store)


def test_a_projection_is_retried_with_backoff_before_it_is_parked(store_url: str) -> None:
    app = build_app()
    fussy = Fussy(policy=RetryPolicy(max_attempts=3))
    app.projection(fussy)
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        positions = open_accounts(rt, *ACCOUNTS)
        t0 = clock.now()

        rt.run_until_idle_no_advance()  # first failure: waiting out its retry, not parked
        assert [f.attempt for f in fussy.failures] == [1]
        assert operations.parked(store) == []
        assert not rt.quiescent(), "a retry is due later: the run is not over"
        assert rt.next_due() == t0 + 1
        assert seen(store) == ["g1-a1", "g1-a2"]

        rt.run_until_idle()  # the virtual clock moves to each retry
        assert clock.now() - t0 == 1 + 2, "backoff of 1 s, then 2 s, then parked"
        assert [f.attempt for f in fussy.failures] == [1, 2, 3]
        assert {f.first_failed_at for f in fussy.failures} == {t0}
        error = "RuntimeError: cannot project g1-bad"
        assert [f.last_error for f in fussy.failures] == [None, error, error]
        assert {f.subject for f in fussy.failures} == {"projection:fussy"}
        assert all(isinstance(f.error, RuntimeError) for f in fussy.failures)
        assert all(
            isinstance(f.message, AccountOpened) and f.message.account_id == "g1-bad"
            for f in fussy.failures
        )
        [parked] = operations.parked(store)
        assert (parked["position"], parked["attempts"]) == (positions["g1-bad"], 3)
        assert rt.quiescent()


class Patient(Fussy):
    """Asks to be retried at the next round twice, then succeeds."""

    name = "patient"

    def opened(self, session: Session, e: AccountOpened, info: EventInfo) -> None:
        if e.account_id == self.fail_on and len(self.failures) < 2:
            raise RuntimeError("not yet")
        super().opened(session, e, info)

    def on_error(self, failure: Failure) -> Decision:
        self.failures.append(failure)
        return Retry(timedelta(0))


def test_a_projection_retried_without_delay_runs_again_at_the_next_round(
    store_url: str,
) -> None:
    app = build_app()
    patient = Patient()
    patient.broken = False
    app.projection(patient)
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        open_accounts(rt, *ACCOUNTS)
        t0 = clock.now()
        rt.run_until_idle_no_advance()  # no time passes: the retries run at the next rounds
        assert clock.now() == t0
        assert [f.attempt for f in patient.failures] == [1, 2]
        assert seen(store) == list(ACCOUNTS)
        assert operations.parked(store) == []


class Nosy(ProcessManager[dict[str, Any]]):
    """Its `interested` breaks on one account: the router (shared by every process) stops."""

    name = "Nosy"
    interested_in = (AccountOpened,)

    def initial(self) -> dict[str, Any]:
        return {}

    def interested(self, event: AccountOpened) -> Route | None:
        if event.account_id == "g1-bad":
            raise RuntimeError("cannot route g1-bad")
        return start(event.account_id)


def test_a_failing_router_is_parked_while_projections_go_on(store_url: str) -> None:
    app = build_app()
    app.process(Nosy())
    app.projection(Fussy(fail_on="none"))
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        positions = open_accounts(rt, *ACCOUNTS)
        t0 = clock.now()
        rt.run_until_idle()
        assert clock.now() - t0 == 1 + 2 + 4 + 8, "the default policy: 5 tries with backoff"
        [parked] = operations.parked(store)
        assert parked == {
            "kind": "consumer",
            "id": "router",
            "position": positions["g1-bad"],
            "attempts": 5,
            "error": "RuntimeError: cannot route g1-bad",
        }
        assert seen(store) == list(ACCOUNTS), "projections do not wait for the router"
        assert set(process_status(store, "Nosy")) == {"g1-a1", "g1-a2"}
        assert rt.quiescent()
        assert operations.skip(store, "router")
        rt.run_until_idle()
        assert set(process_status(store, "Nosy")) == {"g1-a1", "g1-a2", "g1-a3", "g1-a4"}
        assert operations.parked(store) == []


# -- the on_error hook of a process ---------------------------------------------------------------


class Failing(ProcessManager[dict[str, Any]]):
    """Fails on AccountFrozen (once per `fail_times`, or forever); records what on_error got.

    Its decision comes from `decide` (by default: its retry policy)."""

    name = "Failing"
    state_type = None

    def __init__(self, decide: Any = None, fail_times: int = 10**9) -> None:
        self.failures: list[Failure] = []
        self.decide = decide
        self.fail_times = fail_times
        self.retry_policy = RetryPolicy(max_attempts=3)

    def initial(self) -> dict[str, Any]:
        return {"seen": []}

    def interested(self, event: AccountOpened | AccountFrozen | AccountClosed) -> Route | None:
        if isinstance(event, AccountOpened):
            return start(event.account_id)
        return continue_(event.account_id)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, AccountFrozen) and len(self.failures) < self.fail_times:
            raise RuntimeError(f"cannot handle the freeze of {ctx.instance_id}")
        return []

    def evolve(self, state: dict[str, Any], message: Message) -> dict[str, Any]:
        return {"seen": [*state["seen"], type(message).__name__]}

    def on_error(self, failure: Failure) -> Decision:
        self.failures.append(failure)
        return self.decide(failure) if self.decide else super().on_error(failure)


def failing_state(store: Store, instance_id: str) -> tuple[str, str]:
    with store.transaction() as tx:
        [row] = tx.sql(
            "SELECT status, state FROM process_instances"
            " WHERE process = 'Failing' AND instance_id = :i",
            {"i": instance_id},
        )
    return row


def test_on_error_gets_the_failure_context_across_retries(store_url: str) -> None:
    app = build_app()
    failing = Failing()
    app.process(failing)
    assert failing.interested_in == (AccountOpened, AccountFrozen, AccountClosed)
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        open_accounts(rt, "a")
        rt.run_until_idle()
        rt.send(Freeze(account_id="a", reason="r"))
        t0 = clock.now()
        rt.run_until_idle()
        assert [f.attempt for f in failing.failures] == [1, 2, 3]
        assert {f.first_failed_at for f in failing.failures} == {t0}
        assert {f.subject for f in failing.failures} == {"process:Failing/a"}
        assert all(isinstance(f.message, AccountFrozen) for f in failing.failures)
        assert str(failing.failures[0].error) == "cannot handle the freeze of a"
        previous = "RuntimeError: cannot handle the freeze of a"
        assert [f.last_error for f in failing.failures] == [None, previous, previous]
        [parked] = operations.parked(store)
        assert (parked["process"], parked["instance_id"], parked["attempts"]) == (
            "Failing",
            "a",
            3,
        )


def test_on_error_skipping_the_message_drops_it_and_the_instance_goes_on(
    store_url: str,
) -> None:
    app = build_app()
    failing = Failing(decide=lambda failure: SkipMessage())
    app.process(failing)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "a")
        rt.send(Freeze(account_id="a", reason="r"))
        rt.send(Close(account_id="a"))
        rt.run_until_idle()
        assert [f.attempt for f in failing.failures] == [1]
        assert operations.parked(store) == []
        assert failing_state(store, "a") == (
            "active",
            '{"seen":["AccountOpened","AccountClosed"]}',
        ), "the freeze was dropped, the close that followed it was handled"
        with store.transaction() as tx:
            assert tx.sql("SELECT COUNT(*) FROM inbox WHERE process = 'Failing'")[0][0] == 0


def test_a_message_skipped_by_on_error_stays_dropped_when_redelivered(store_url: str) -> None:
    app = build_app()
    failing = Failing(decide=lambda failure: SkipMessage())
    app.process(failing)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "a")
        rt.send(Freeze(account_id="a", reason="r"))
        rt.run_until_idle()
        assert [f.attempt for f in failing.failures] == [1]
        assert failing_state(store, "a") == ("active", '{"seen":["AccountOpened"]}')

        failing.fail_times = 0  # it would succeed now: a redelivery must still not run it
        rt.rewind("router", 0)
        rt.run_until_idle()
        assert failing_state(store, "a") == ("active", '{"seen":["AccountOpened"]}')
        with store.transaction() as tx:
            assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0


class Alarmed(ProcessManager[dict[str, Any]]):
    """Sets a timer when an account opens; its step for the timer fails and is skipped."""

    name = "Alarmed"

    def initial(self) -> dict[str, Any]:
        return {"n": 0}

    def interested(self, event: AccountOpened) -> Route | None:
        return start(event.account_id)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, AccountOpened):
            return [Schedule("alarm", after=timedelta(hours=1))]
        raise RuntimeError("the alarm is broken")

    def evolve(self, state: dict[str, Any], message: Message) -> dict[str, Any]:
        return {"n": state["n"] + 1}

    def on_error(self, failure: Failure) -> Decision:
        return SkipMessage()


def test_a_fired_timer_skipped_by_on_error_is_no_longer_set(store_url: str) -> None:
    app = build_app()
    app.process(Alarmed())
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        open_accounts(rt, "a")
        t0 = clock.now()
        rt.run_until_idle()
        assert clock.now() == t0 + 3600
        with store.transaction() as tx:
            rows = tx.sql(
                "SELECT status, state, timers, wait_until FROM process_instances"
                " WHERE process = 'Alarmed'"
            )
            assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0
        assert rows == [("active", '{"n":1}', None, 0)]
        assert operations.parked(store) == []
        assert rt.quiescent()


def test_on_error_retrying_without_delay_retries_at_the_next_round(store_url: str) -> None:
    app = build_app()
    failing = Failing(decide=lambda failure: Retry(timedelta(0)), fail_times=2)
    app.process(failing)
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        open_accounts(rt, "a")
        rt.send(Freeze(account_id="a", reason="r"))
        t0 = clock.now()
        rt.run_until_idle_no_advance()  # no time passes: the retries run at the next rounds
        assert clock.now() == t0
        assert [f.attempt for f in failing.failures] == [1, 2]
        assert {f.first_failed_at for f in failing.failures} == {t0}
        assert failing_state(store, "a") == (
            "active",
            '{"seen":["AccountOpened","AccountFrozen"]}',
        )
        assert operations.parked(store) == []


def test_a_parked_step_can_be_retried_or_skipped_and_a_redelivery_is_dropped(
    store_url: str,
) -> None:
    app = build_app()
    failing = Failing(decide=lambda failure: RetryPolicy(max_attempts=1).decide(failure))
    app.process(failing)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "a", "b")
        rt.send(Freeze(account_id="a", reason="r"))
        rt.send(Freeze(account_id="b", reason="r"))
        rt.run_until_idle()
        parked = {p["instance_id"]: p["id"] for p in operations.parked(store)}
        assert set(parked) == {"a", "b"}

        failing.fail_times = 0  # fixed: a is retried, b is skipped
        assert operations.retry(store, parked["a"])
        assert operations.skip(store, parked["b"])
        rt.run_until_idle()
        assert operations.parked(store) == []
        assert failing_state(store, "a")[1] == '{"seen":["AccountOpened","AccountFrozen"]}'
        assert failing_state(store, "b")[1] == '{"seen":["AccountOpened"]}'

        # the router forgets where it was: every event comes again, and is dropped
        rt.rewind("router", 0)
        rt.run_until_idle()
        assert failing_state(store, "a")[1] == '{"seen":["AccountOpened","AccountFrozen"]}'
        assert failing_state(store, "b")[1] == '{"seen":["AccountOpened"]}'
        with store.transaction() as tx:
            assert tx.sql("SELECT COUNT(*) FROM inbox")[0][0] == 0


# -- an on_error hook that is itself broken --------------------------------------------------------


def hook_raises(failure: Failure) -> Decision:
    raise ValueError("the hook is broken")


def hook_returns_nothing(failure: Failure) -> Decision:
    return None  # type: ignore[return-value]


BROKEN_HOOKS = {
    "raises": (hook_raises, "its on_error failed: ValueError: the hook is broken"),
    "returns None": (hook_returns_nothing, "its on_error returned None, not a decision"),
}


@pytest.mark.parametrize("hook", list(BROKEN_HOOKS))
@pytest.mark.parametrize("kind", ["projection", "process", "command"])
def test_a_broken_on_error_hook_parks_the_one_thing_that_failed(
    store_url: str, kind: str, hook: str
) -> None:
    """Neither an exception escaping the round (every round of every worker would fail, all
    other work with it) nor a message silently dropped or retried forever."""
    on_error, note = BROKEN_HOOKS[hook]
    app = build_app()
    if kind == "projection":
        fussy = Fussy()
        fussy.on_error = on_error  # type: ignore[method-assign]
        app.projection(fussy)
    elif kind == "process":
        app.process(Failing(decide=on_error))
    else:
        app.command(Ping, handler=down, on_error=on_error)
        app.command(Pong, handler=down, retry=RetryPolicy(max_attempts=1))
        app.process(Caller())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, *ACCOUNTS)
        rt.send(Freeze(account_id="g1-bad", reason="r"))
        rt.run_until_idle()  # nothing escapes
        parked = [p for p in operations.parked(store) if p.get("type") != "Pong"]
        assert len(parked) == (len(ACCOUNTS) if kind == "command" else 1)
        assert all(note in p["error"] and p["attempts"] == 1 for p in parked)
        assert_everything_but(kind, rt, store)
        assert rt.quiescent()


def assert_everything_but(kind: str, rt: Runtime, store: Store) -> None:
    checkpoints = rt.checkpoints()
    assert checkpoints["projection:accounts_by_group"] == checkpoints["head"]
    assert checkpoints["router"] == checkpoints["head"]
    assert process_status(store, "FreezeWatch") == {"g1-bad": "done"}, "thawed after 3 days"
    if kind == "projection":
        assert seen(store) == ["g1-a1", "g1-a2"]


# -- commands: a policy per command type ----------------------------------------------------------


class Ping(Command, frozen=True, kw_only=True):
    account_id: str


class Pong(Command, frozen=True, kw_only=True):
    account_id: str


def down(ctx: Any, command: Command) -> None:
    raise RuntimeError(f"{type(command).__name__} is down")


class Caller(ProcessManager[dict[str, Any]]):
    name = "Caller"

    def initial(self) -> dict[str, Any]:
        return {}

    def interested(self, event: AccountOpened) -> Route | None:
        return start(event.account_id)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        return [Ping(account_id=ctx.instance_id), Pong(account_id=ctx.instance_id)]


def test_each_command_type_has_its_own_policy(store_url: str) -> None:
    app = build_app()
    failures: list[Failure] = []
    policy = RetryPolicy(max_attempts=2)

    def on_ping_error(failure: Failure) -> Decision:
        failures.append(failure)
        return policy.decide(failure)

    app.command(Ping, handler=down, on_error=on_ping_error)
    app.command(Pong, handler=down)  # the default policy: five tries
    app.process(Caller())
    with open_store(store_url) as store:
        clock = VirtualClock()
        rt = Runtime(app, store, clock)
        open_accounts(rt, "a")
        rt.run_once_stages({"router", "processes"})
        t0 = clock.now()
        rt.run_until_idle()
        parked = {p["type"]: p for p in operations.parked(store)}
        assert {t: (p["kind"], p["attempts"]) for t, p in parked.items()} == {
            "Ping": ("command", 2),
            "Pong": ("command", 5),
        }
        assert parked["Ping"]["error"] == "RuntimeError: Ping is down"
        assert clock.now() - t0 == 1 + 2 + 4 + 8, "Pong's backoff; Ping parked after 1 s"
        assert [f.attempt for f in failures] == [1, 2]
        assert {f.first_failed_at for f in failures} == {t0}
        assert {f.subject for f in failures} == {"command:Ping"}
        assert [f.last_error for f in failures] == [None, "RuntimeError: Ping is down"]
        assert all(isinstance(f.message, Ping) for f in failures)
        assert rt.quiescent()


def test_a_retry_policy_given_to_app_command_parks_that_type_after_its_attempts(
    store_url: str,
) -> None:
    app = build_app()
    app.command(Ping, handler=down, retry=RetryPolicy(max_attempts=2))
    app.command(Pong, handler=down)
    app.process(Caller())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "a")
        rt.run_until_idle()
        attempts = {p["type"]: p["attempts"] for p in operations.parked(store)}
        assert attempts == {"Ping": 2, "Pong": 5}


def test_a_batch_command_whose_policy_skips_it_marks_its_item_skipped(store_url: str) -> None:
    app = build_app()
    failures: list[Failure] = []

    def freeze(ctx: Any, command: Freeze) -> None:
        if command.account_id == "g1-bad":
            raise RuntimeError("the bank's API refuses g1-bad")
        ctx.execute(Account, command.account_id, command)

    def skip_it(failure: Failure) -> Decision:
        failures.append(failure)
        return SkipMessage()

    app.command(Freeze, handler=freeze, on_error=skip_it)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "g1-a1", "g1-bad", "g1-a2")
        rt.send(ReviewGroup(group="g1"))
        rt.run_until_idle()
        assert [(f.attempt, f.subject) for f in failures] == [(1, "command:Freeze")]
        assert operations.parked(store) == []
        progress = rt.progress("review-g1-1")
        assert progress is not None
        assert (progress.status, progress.done, progress.skipped) == ("completed", 2, 1)
        with store.transaction() as tx:
            rows = tx.sql(
                "SELECT target_id, status, detail FROM batch_items WHERE status = 'skipped'"
            )
            assert [(r[0], r[1]) for r in rows] == [("g1-bad", "skipped")]
            assert "refuses g1-bad" in rows[0][2]
            assert tx.sql(
                "SELECT status FROM commands WHERE type = 'Freeze' AND data LIKE '%g1-bad%'"
            ) == [("skipped",)]
        assert process_status(store, "GroupReview") == {"g1": "done"}


# -- batches a process cannot start ---------------------------------------------------------------


class Touch(Command, frozen=True, kw_only=True):
    account_id: str


def touch(ctx: Any, command: Touch) -> None:
    """Does nothing: the item is done when its command has run."""


def touch_template(target: str, params: dict[str, Any]) -> Command:
    return Touch(account_id=target)


class Starter(ProcessManager[dict[str, Any]]):
    """Starts a batch over group g1 for each account opened in group "starters"; what the
    account's id contains picks a broken source, template or outcome mode."""

    name = "Starter"

    def initial(self) -> dict[str, Any]:
        return {}

    def interested(self, event: AccountOpened | BatchCompleted) -> Route | None:
        if isinstance(event, AccountOpened) and event.group == "starters":
            return start(event.account_id)
        return None

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, BatchCompleted):
            return [Complete()]
        iid = ctx.instance_id
        assert ctx.position is not None
        return [
            StartBatch(
                batch_id=f"touch-{iid}",
                source="nowhere" if "no-source" in iid else "accounts_of_group",
                template="nope" if "no-template" in iid else "touch",
                fence=ctx.position,
                params={"group": "g1"},
                await_outcome="awaits" in iid,
            )
        ]


def with_starter(app: App) -> App:
    app.command(Touch, handler=touch)
    app.batch_template("touch", touch_template, awaits_outcome=False)
    app.process(Starter())
    return app


def test_a_batch_naming_an_unknown_source_or_template_parks_only_its_instance(
    store_url: str,
) -> None:
    app = with_starter(build_app())
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "g1-a1", "g1-a2", "g1-a3")
        open_accounts(rt, "s-good", "s-no-source", "s-no-template", group="starters")
        rt.send(ReviewGroup(group="g1"))
        stats = rt.run_until_idle()  # no exception escapes a round
        assert stats.rounds > 1

        parked = {p["instance_id"]: p for p in operations.parked(store)}
        assert set(parked) == {"s-no-source", "s-no-template"}
        assert all(p["process"] == "Starter" and p["attempts"] == 1 for p in parked.values())
        assert "unknown target source 'nowhere'" in parked["s-no-source"]["error"]
        assert "batch touch-s-no-source" in parked["s-no-source"]["error"]
        assert "unknown template 'nope'" in parked["s-no-template"]["error"]
        assert rt.progress("touch-s-no-source") is None
        assert rt.progress("touch-s-no-template") is None

        good = rt.progress("touch-s-good")
        assert good is not None and (good.status, good.done) == ("completed", 3)
        review = rt.progress("review-g1-1")
        assert review is not None and (review.status, review.done) == ("completed", 3)
        assert process_status(store, "Starter") == {
            "s-good": "done",
            "s-no-source": "new",
            "s-no-template": "new",
        }
        assert rt.quiescent()

        # later rounds keep working: a new instance starts and finishes its batch
        open_accounts(rt, "s-late", group="starters")
        rt.run_until_idle()
        late = rt.progress("touch-s-late")
        assert late is not None and late.status == "completed"
        assert len(operations.parked(store)) == 2


def plain_app() -> App:
    """Accounts and a target source, but no batch outcome declared."""
    app = App("plain")
    app.register(AccountOpened, AccountFrozen, AccountThawed, AccountClosed, GroupReviewRequested)
    app.command(OpenAccount, Account, to=lambda c: c.account_id)
    app.projection(AccountsByGroup())
    app.target_source("accounts_of_group", accounts_of_group, projection="accounts_by_group")
    return with_starter(app)


def test_a_batch_awaiting_outcomes_in_an_app_without_any_parks_its_instance(
    store_url: str,
) -> None:
    app = plain_app()
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "g1-a1", "g1-a2")
        open_accounts(rt, "s-good", "s-awaits", group="starters")
        rt.run_until_idle()
        [parked] = operations.parked(store)
        assert parked["instance_id"] == "s-awaits"
        assert "awaits outcomes" in parked["error"]
        assert "App.batch_outcome" in parked["error"]
        good = rt.progress("touch-s-good")
        assert good is not None and (good.status, good.done) == ("completed", 2)
        assert rt.progress("touch-s-awaits") is None
        assert rt.quiescent()


def test_a_template_registered_without_outcomes_finishes_items_when_their_command_runs(
    store_url: str,
) -> None:
    """StartBatch.await_outcome left unset follows the template's declaration: here the
    items finish as soon as Freeze has run, without waiting for the thaw (an outcome)."""
    app = build_app()
    app.batch_template("freeze", freeze_template, awaits_outcome=False)
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        open_accounts(rt, "g1-a1", "g1-a2")
        rt.send(ReviewGroup(group="g1"))
        rt.run_until_idle_no_advance()  # no virtual time passes: no thaw has happened
        progress = rt.progress("review-g1-1")
        assert progress is not None
        assert (progress.status, progress.done, progress.awaiting) == ("completed", 2, 0)
