"""A small domain for engine tests: accounts, a nightly review process, a batch over accounts.

It exercises every engine feature without knowing anything of customers or contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec

from procession import (
    Aggregate,
    App,
    BatchCompleted,
    Command,
    CommandRejected,
    Complete,
    Event,
    EventInfo,
    Message,
    ProcessManager,
    Projection,
    Route,
    Schedule,
    Skipped,
    StartBatch,
    StepContext,
    TimerFired,
    Tx,
    continue_,
    start,
)

# -- messages -------------------------------------------------------------------------------


class OpenAccount(Command, frozen=True, kw_only=True):
    account_id: str
    group: str


class Freeze(Command, frozen=True, kw_only=True):
    account_id: str
    reason: str


class Thaw(Command, frozen=True, kw_only=True):
    account_id: str


class Close(Command, frozen=True, kw_only=True):
    account_id: str


class ReviewGroup(Command, frozen=True, kw_only=True):
    group: str


class AccountOpened(Event, frozen=True, kw_only=True):
    account_id: str
    group: str


class AccountFrozen(Event, frozen=True, kw_only=True):
    account_id: str
    reason: str


class AccountThawed(Event, frozen=True, kw_only=True):
    account_id: str


class AccountClosed(Event, frozen=True, kw_only=True):
    account_id: str


class GroupReviewRequested(Event, frozen=True, kw_only=True):
    group: str
    review: int


class Reminder(Event, frozen=True, kw_only=True):
    account_id: str
    n: int


# -- the account aggregate ------------------------------------------------------------------


class AccountState(msgspec.Struct):
    status: str = "none"
    group: str = ""


def evolve(state: AccountState, event: Any) -> AccountState:
    match event:
        case AccountOpened(group=group):
            return AccountState("open", group)
        case AccountFrozen():
            return AccountState("frozen", state.group)
        case AccountThawed():
            return AccountState("open", state.group)
        case AccountClosed():
            return AccountState("closed", state.group)
    return state


def decide(state: AccountState, command: Any) -> Sequence[Event]:
    match command:
        case OpenAccount(account_id=aid, group=group):
            if state.status != "none":
                raise CommandRejected(f"account {aid} already exists")
            return [AccountOpened(account_id=aid, group=group)]
        case Freeze(account_id=aid, reason=reason):
            if state.status == "closed":
                raise Skipped(f"account {aid} is closed")
            if state.status == "frozen":
                return []
            if state.status == "none":
                raise CommandRejected(f"account {aid} does not exist")
            return [AccountFrozen(account_id=aid, reason=reason)]
        case Thaw(account_id=aid):
            if state.status != "frozen":
                raise CommandRejected(f"account {aid} is not frozen")
            return [AccountThawed(account_id=aid)]
        case Close(account_id=aid):
            if state.status in ("none", "closed"):
                raise CommandRejected(f"account {aid} cannot be closed")
            return [AccountClosed(account_id=aid)]
    raise CommandRejected(f"unknown command {command!r}")


Account = Aggregate("Account", AccountState(), evolve, decide)


def group_decide(state: int, command: Any) -> Sequence[Event]:
    return [GroupReviewRequested(group=command.group, review=state + 1)]


Group = Aggregate("Group", 0, lambda s, e: s + 1, group_decide)

# -- read model: accounts by group, with the position each was born at (for the fence) -------


class AccountsByGroup(Projection):
    name = "accounts_by_group"

    def __init__(self) -> None:
        super().__init__()
        self.on(AccountOpened, self.opened)
        self.on(AccountClosed, self.closed)

    def setup(self, tx: Tx) -> None:
        tx.sql(
            "CREATE TABLE IF NOT EXISTS toy_accounts (account_id TEXT PRIMARY KEY,"
            " grp TEXT NOT NULL, status TEXT NOT NULL, born_at BIGINT NOT NULL)"
        )

    def reset(self, tx: Tx) -> None:
        tx.sql("DELETE FROM toy_accounts")

    def opened(self, tx: Tx, e: AccountOpened, info: EventInfo) -> None:
        tx.sql(
            "INSERT INTO toy_accounts (account_id, grp, status, born_at)"
            " VALUES (:a, :g, 'open', :p)",
            {"a": e.account_id, "g": e.group, "p": info.position},
        )

    def closed(self, tx: Tx, e: AccountClosed, info: EventInfo) -> None:
        tx.sql(
            "UPDATE toy_accounts SET status = 'closed' WHERE account_id = :a", {"a": e.account_id}
        )


def accounts_of_group(
    tx: Tx, params: dict[str, Any], fence: int, after: str | None, limit: int
) -> list[str]:
    rows = tx.sql(
        "SELECT account_id FROM toy_accounts WHERE grp = :g AND born_at <= :fence"
        " AND account_id > :after ORDER BY account_id LIMIT :limit",
        {"g": params["group"], "fence": fence, "after": after or "", "limit": limit},
    )
    return [r[0] for r in rows]


# -- processes ------------------------------------------------------------------------------


class ReviewState(msgspec.Struct):
    batches: list[str] = msgspec.field(default_factory=list)
    completed: list[dict[str, Any]] = msgspec.field(default_factory=list)


class GroupReview(ProcessManager[ReviewState]):
    """Freezes every account of a group (a batch); thaws come from FreezeWatch."""

    name = "GroupReview"
    interested_in = (GroupReviewRequested,)
    state_type = ReviewState

    def initial(self) -> ReviewState:
        return ReviewState()

    def interested(self, event: Message) -> Route | None:
        if isinstance(event, GroupReviewRequested):
            return start(event.group)
        return None

    def handle(self, state: ReviewState, message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, GroupReviewRequested):
            position = int(ctx.metadata["position"])
            batch_id = f"review-{message.group}-{message.review}"
            previous = state.batches[-1] if state.batches else None
            return [
                StartBatch(
                    batch_id=batch_id,
                    source="accounts_of_group",
                    template="freeze",
                    fence=position,
                    params={"group": message.group},
                    max_in_flight=50,
                    page_size=100,
                    supersedes=previous,
                )
            ]
        if (
            isinstance(message, BatchCompleted)
            and state.batches
            and (message.batch_id == state.batches[-1])
        ):
            return [Complete()]
        return []

    def evolve(self, state: ReviewState, message: Message) -> ReviewState:
        if isinstance(message, GroupReviewRequested):
            batch_id = f"review-{message.group}-{message.review}"
            return ReviewState([*state.batches, batch_id], state.completed)
        if isinstance(message, BatchCompleted):
            return ReviewState(state.batches, [*state.completed, msgspec.to_builtins(message)])
        return state


class WatchState(msgspec.Struct):
    reminders: int = 0


class FreezeWatch(ProcessManager[WatchState]):
    """Per account: remind after 1 and 2 days, thaw at 3 days, unless closed first."""

    name = "FreezeWatch"
    interested_in = (AccountFrozen, AccountThawed, AccountClosed)
    state_type = WatchState

    def initial(self) -> WatchState:
        return WatchState()

    def interested(self, event: Message) -> Route | None:
        if isinstance(event, AccountFrozen):
            return start(event.account_id)
        if isinstance(event, AccountThawed | AccountClosed):
            return continue_(event.account_id)
        return None

    def handle(self, state: WatchState, message: Message, ctx: StepContext) -> list[Any]:
        if isinstance(message, AccountFrozen):
            return [
                Schedule("remind-1", after=timedelta(days=1)),
                Schedule("remind-2", after=timedelta(days=2)),
                Schedule("thaw", after=timedelta(days=3)),
            ]
        if isinstance(message, TimerFired) and message.name == "thaw":
            return [Thaw(account_id=ctx.instance_id)]
        if isinstance(message, AccountThawed | AccountClosed):
            return [Complete()]
        return []

    def evolve(self, state: WatchState, message: Message) -> WatchState:
        if isinstance(message, TimerFired) and message.name.startswith("remind"):
            return WatchState(state.reminders + 1)
        return state


def freeze_template(target: str, params: dict[str, Any]) -> Command:
    return Freeze(account_id=target, reason=f"review of {params['group']}")


def build_app() -> App:
    app = App("toy")
    app.register(
        AccountOpened, AccountFrozen, AccountThawed, AccountClosed, GroupReviewRequested, Reminder
    )
    for command in (OpenAccount, Freeze, Thaw, Close):
        app.command(command, Account, to=lambda c: c.account_id)
    app.command(ReviewGroup, Group, to=lambda c: c.group)
    app.projection(AccountsByGroup())
    app.process(GroupReview())
    app.process(FreezeWatch())
    app.target_source("accounts_of_group", accounts_of_group, projection="accounts_by_group")
    app.batch_template("freeze", freeze_template)
    app.batch_outcome(AccountThawed, target=lambda e: e.account_id, outcome="done")
    app.batch_outcome(AccountClosed, target=lambda e: e.account_id, outcome="skipped")
    return app
