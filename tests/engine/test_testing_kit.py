"""procession.testing: given / when / then, for aggregates and process managers."""

from __future__ import annotations

import pytest

from procession import CommandRejected, Skipped
from procession.testing import AggregateScenario, ProcessScenario
from tests.support.toy import (
    Account,
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountThawed,
    Freeze,
    FreezeWatch,
    Thaw,
)

DAY = 86400.0


def test_aggregate_given_when_then() -> None:
    (
        AggregateScenario(Account)
        .given(AccountOpened(account_id="a", group="g"))
        .when(Freeze(account_id="a", reason="r"))
        .then(AccountFrozen(account_id="a", reason="r"))
    )
    AggregateScenario(Account).given(
        AccountOpened(account_id="a", group="g"), AccountFrozen(account_id="a", reason="r")
    ).when(Freeze(account_id="a", reason="again")).then()
    AggregateScenario(Account).given(
        AccountOpened(account_id="a", group="g"), AccountClosed(account_id="a")
    ).when(Freeze(account_id="a", reason="r")).then_rejects(Skipped, "closed")


def test_aggregate_scenario_reports_a_wrong_expectation() -> None:
    scenario = AggregateScenario(Account).when(Thaw(account_id="a"))
    scenario.then_rejects(CommandRejected, "not frozen")
    with pytest.raises(AssertionError, match="expected"):
        AggregateScenario(Account).given(AccountOpened(account_id="a", group="g")).when(
            Freeze(account_id="a", reason="r")
        ).then()


def test_process_scenario_with_virtual_time() -> None:
    with ProcessScenario(FreezeWatch()) as watch:
        watch.when(AccountFrozen(account_id="a", reason="r")).then_commands()
        assert [name for name, _ in watch.timers("a")] == ["remind-1", "remind-2", "thaw"]
        assert [left for _, left in watch.timers("a")] == [1 * DAY, 2 * DAY, 3 * DAY]
        watch.advance(days=2).then_commands()
        assert watch.state("a").reminders == 2
        watch.advance(days=1).then_commands(Thaw(account_id="a"))
        watch.when(AccountThawed(account_id="a")).then_commands()
        assert watch.status("a") == "done"
        assert watch.timers("a") == []


def test_process_scenario_closing_early_cancels_the_timers() -> None:
    with ProcessScenario(FreezeWatch()) as watch:
        watch.given(AccountFrozen(account_id="b", reason="r")).advance(days=1)
        watch.when(AccountClosed(account_id="b")).then_commands()
        assert watch.status("b") == "done" and watch.timers("b") == []
        watch.advance(days=5).then_commands()
