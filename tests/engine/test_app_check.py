"""App.check refuses, before anything runs, the wiring mistakes that can be known statically;
`interested_in` is derived from the annotation of `interested`'s event parameter."""

from __future__ import annotations

from typing import Any

import pytest

from procession import (
    App,
    ConfigurationError,
    Event,
    Message,
    ProcessManager,
    Route,
    Runtime,
    StepContext,
    VirtualClock,
    continue_,
    open_store,
    start,
)
from procession.app import routed_types
from tests.support.toy import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountThawed,
    Close,
    Freeze,
    OpenAccount,
    build_app,
    freeze_template,
)


class Starts(ProcessManager[dict[str, Any]]):
    """Declares the batches it starts."""

    name = "Starts"
    interested_in = (AccountOpened,)

    def __init__(self, *batches: tuple[str, str]) -> None:
        self.starts_batches = batches


def refusal(app: App) -> str:
    with pytest.raises(ConfigurationError) as raised:
        app.check()
    return str(raised.value)


def test_the_toy_app_passes() -> None:
    build_app().check()


def test_starting_batches_from_an_unknown_source_is_refused() -> None:
    app = build_app()
    app.process(Starts(("accounts_of_group", "freeze"), ("nowhere", "freeze")))
    message = refusal(app)
    assert "process 'Starts' starts batches from unknown target source 'nowhere'" in message
    assert "template" not in message, "the known template is not blamed"


def test_starting_batches_of_an_unknown_template_is_refused() -> None:
    app = build_app()
    app.process(Starts(("accounts_of_group", "nope")))
    assert "process 'Starts' starts batches of unknown template 'nope'" in refusal(app)


def test_the_runtime_refuses_a_misconfigured_app_before_running(tmp_path: Any) -> None:
    app = build_app()
    app.process(Starts(("nowhere", "nope")))
    with (
        open_store(f"sqlite:///{tmp_path}/store.db") as store,
        pytest.raises(ConfigurationError, match="unknown target source 'nowhere'"),
    ):
        Runtime(app, store, VirtualClock())


def test_a_template_awaiting_outcomes_needs_a_batch_outcome() -> None:
    app = App("no-outcomes")
    app.register(AccountOpened)
    app.batch_template("freeze", freeze_template)  # awaits_outcome=True by default
    message = refusal(app)
    assert "batch template 'freeze' awaits outcomes" in message
    assert "App.batch_outcome" in message

    app.batch_template("freeze", freeze_template, awaits_outcome=False)
    app.check()
    app.batch_template("freeze", freeze_template)
    app.batch_outcome(AccountThawed, target=lambda e: e.account_id)
    app.check()


class Omits(ProcessManager[dict[str, Any]]):
    name = "Omits"
    interested_in = (AccountOpened,)

    def interested(self, event: AccountOpened | AccountFrozen) -> Route | None:
        return start(event.account_id)


def test_an_annotation_naming_a_type_interested_in_omits_is_refused() -> None:
    app = build_app()
    app.process(Omits())
    message = refusal(app)
    assert "process 'Omits'" in message
    assert "AccountFrozen" in message and "interested_in omits" in message
    assert "AccountOpened," not in message, "only the omitted type is named"


class Unannotated(ProcessManager[dict[str, Any]]):
    name = "Unannotated"

    def interested(self, event):  # type: ignore[no-untyped-def]
        return start(event.account_id)


class Vague(ProcessManager[dict[str, Any]]):
    name = "Vague"

    def interested(self, event: Message) -> Route | None:
        return None


class VagueEvent(ProcessManager[dict[str, Any]]):
    name = "VagueEvent"

    def interested(self, event: Event | None) -> Route | None:
        return None


@pytest.mark.parametrize("process", [Unannotated, Vague, VagueEvent])
def test_interested_without_interested_in_nor_an_informative_annotation_is_refused(
    process: type[ProcessManager[Any]],
) -> None:
    app = build_app()
    app.process(process())
    assert process().interested_in == ()
    message = refusal(app)
    assert f"process {process.name!r} routes no event type" in message


def test_every_problem_is_reported_at_once() -> None:
    app = build_app()
    app.process(Starts(("nowhere", "nope")))
    app.process(Omits())
    app.process(Vague())
    message = refusal(app)
    for problem in ("'nowhere'", "'nope'", "interested_in omits", "routes no event type"):
        assert problem in message


def test_a_process_that_keeps_the_default_interested_needs_nothing() -> None:
    class Quiet(ProcessManager[dict[str, Any]]):
        name = "Quiet"

    app = build_app()
    app.process(Quiet())
    app.check()


class ByAnnotation(ProcessManager[dict[str, Any]]):
    """Declared by annotation only: receives AccountFrozen and AccountClosed, never opens."""

    name = "ByAnnotation"

    def initial(self) -> dict[str, Any]:
        return {"seen": []}

    def interested(self, event: AccountFrozen | AccountClosed) -> Route | None:
        if isinstance(event, AccountFrozen):
            return start(event.account_id)
        return continue_(event.account_id)

    def handle(self, state: dict[str, Any], message: Message, ctx: StepContext) -> list[Any]:
        return []

    def evolve(self, state: dict[str, Any], message: Message) -> dict[str, Any]:
        return {"seen": [*state["seen"], type(message).__name__]}


def test_routed_types_reads_the_annotation() -> None:
    assert routed_types(ByAnnotation()) == (AccountFrozen, AccountClosed)
    assert routed_types(Omits()) == (AccountOpened, AccountFrozen)
    assert routed_types(Vague()) == ()
    assert routed_types(Unannotated()) == ()


def test_interested_in_is_derived_from_the_annotation_and_routes_end_to_end(
    store_url: str,
) -> None:
    app = build_app()
    process = ByAnnotation()
    app.process(process)
    assert process.interested_in == (AccountFrozen, AccountClosed)
    app.check()
    with open_store(store_url) as store:
        rt = Runtime(app, store, VirtualClock())
        rt.send(OpenAccount(account_id="a", group="g"))
        rt.send(Freeze(account_id="a", reason="r"))
        rt.send(Close(account_id="a"))
        rt.send(OpenAccount(account_id="b", group="g"))  # never frozen: no instance
        rt.run_until_idle()
        with store.transaction() as tx:
            rows = tx.sql(
                "SELECT instance_id, status, state FROM process_instances"
                " WHERE process = 'ByAnnotation'"
            )
        assert rows == [("a", "active", '{"seen":["AccountFrozen","AccountClosed"]}')]


class AccountEvent(Event, frozen=True, kw_only=True):
    """A base class of events: never emitted itself, never routed itself."""

    account_id: str


class Joined(AccountEvent, frozen=True, kw_only=True):
    pass


class Left(AccountEvent, frozen=True, kw_only=True):
    pass


class ByBase(ProcessManager[dict[str, Any]]):
    name = "ByBase"
    interested_in = (Joined, Left)

    def interested(self, event: AccountEvent) -> Route | None:
        return start(event.account_id)


def test_an_annotation_naming_a_base_class_is_covered_by_its_declared_subclasses() -> None:
    app = build_app()
    app.register(Joined, Left)
    app.process(ByBase())
    app.check()  # Joined and Left are routed: nothing the annotation takes is lost

    class Narrower(ByBase):
        name = "Narrower"
        interested_in = (Joined, AccountOpened)  # type: ignore[assignment]

        def interested(self, event: Joined | Left) -> Route | None:  # type: ignore[override]
            return start(event.account_id)

    app.process(Narrower())
    assert "process 'Narrower': interested() takes Left" in refusal(app)


class ByBaseOnly(ProcessManager[dict[str, Any]]):
    """Declared by a base class alone: every registered subclass is routed to it."""

    name = "ByBaseOnly"

    def initial(self) -> dict[str, Any]:
        return {"seen": []}

    def interested(self, event: AccountEvent) -> Route | None:
        return start(event.account_id)

    def evolve(self, state: dict[str, Any], message: Message) -> dict[str, Any]:
        return {"seen": [*state["seen"], type(message).__name__]}


def test_a_base_class_routes_every_registered_subclass_end_to_end(store_url: str) -> None:
    app = build_app()
    app.register(Joined, Left)
    process = ByBaseOnly()
    app.process(process)
    assert process.interested_in == (AccountEvent,)
    app.check()  # AccountEvent itself is not registered, but its subclasses are
    with open_store(store_url, app.messages) as store:
        rt = Runtime(app, store, VirtualClock())
        store.append("Member-m", [Joined(account_id="m"), Left(account_id="m")])
        rt.run_until_idle()
        with store.transaction() as tx:
            rows = tx.sql("SELECT state FROM process_instances WHERE process = 'ByBaseOnly'")
    assert rows == [('{"seen":["Joined","Left"]}',)]


def test_settings_of_the_first_edition_policy_are_refused_not_ignored() -> None:
    class OldAttempts(ByBaseOnly):
        name = "OldAttempts"
        max_attempts = 3

    class OldHook(ByBaseOnly):
        name = "OldHook"

        def on_error(self, error: Exception, message: Message, attempts: int) -> Any:  # type: ignore[override]
            return None

    app = build_app()
    with pytest.raises(ConfigurationError, match=r"max_attempts is no longer read.*RetryPolicy"):
        app.process(OldAttempts())
    with pytest.raises(ConfigurationError, match=r"on_error takes one Failure"):
        app.process(OldHook())


def test_an_interested_in_base_class_covers_an_annotation_naming_its_subclasses() -> None:
    class Wide(ByBaseOnly):
        name = "Wide"
        interested_in = (AccountEvent,)

        def interested(self, event: Joined | Left) -> Route | None:  # type: ignore[override]
            return start(event.account_id)

    app = build_app()
    app.register(Joined, Left)
    app.process(Wide())
    app.check()
