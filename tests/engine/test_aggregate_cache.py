"""The aggregate cache: states kept from one transaction to the next, never stale, never
uncommitted. Each test runs on both backends."""

from __future__ import annotations

import pytest

from procession import CommandRejected, Runtime
from tests.engine.conftest import MakeRuntime, OpenStores
from tests.support.toy import Close, Freeze, OpenAccount, Thaw, build_app


def test_a_state_is_kept_after_a_commit_and_used_by_the_next_command(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    rt.send(OpenAccount(account_id="a", group="g"))
    assert rt.commands.aggregates.get("Account-a") is not None
    rt.send(Freeze(account_id="a", reason="r"))
    state, version = rt.commands.aggregates.get("Account-a") or (None, 0)
    assert (state.status, version) == ("frozen", 2)
    assert [e.type for e in store.read_stream("Account-a")] == ["AccountOpened", "AccountFrozen"]


def test_an_append_by_someone_else_makes_the_cached_state_stale(
    store_url: str, make_runtime: MakeRuntime, open_stores: OpenStores
) -> None:
    store, _, rt = make_runtime(store_url)
    rt.send(OpenAccount(account_id="a", group="g"))
    rt.send(Freeze(account_id="a", reason="r"))  # cached here: frozen at version 2
    # another process (its own store and runtime) thaws the account behind our back
    other = Runtime(build_app(), open_stores(store_url))
    other.send(Thaw(account_id="a"))
    # frozen in our cache, open in the store: a decision on the cache would reject the
    # freeze as a no-op (already frozen) or thaw twice; the version check reads it again
    with pytest.raises(CommandRejected, match="not frozen"):
        rt.send(Thaw(account_id="a"))
    rt.send(Freeze(account_id="a", reason="again"))
    types = [e.type for e in store.read_stream("Account-a")]
    assert types == ["AccountOpened", "AccountFrozen", "AccountThawed", "AccountFrozen"]
    assert (rt.commands.aggregates.get("Account-a") or (None, 0))[1] == 4


def test_a_rolled_back_transaction_leaves_nothing_in_the_cache(
    store_url: str, make_runtime: MakeRuntime
) -> None:
    store, _, rt = make_runtime(store_url)
    rt.send(OpenAccount(account_id="a", group="g"))
    before = rt.commands.aggregates.get("Account-a")
    # all or none: the freeze is decided (and folded into the transaction's states), then
    # the close of an account that does not exist rejects the batch
    with pytest.raises(CommandRejected):
        rt.send_many([Freeze(account_id="a", reason="r"), Close(account_id="nobody")])
    assert rt.commands.aggregates.get("Account-a") == before
    assert [e.type for e in store.read_stream("Account-a")] == ["AccountOpened"]
    rt.send(Freeze(account_id="a", reason="r"))  # decided on the committed state
    assert [e.type for e in store.read_stream("Account-a")] == ["AccountOpened", "AccountFrozen"]


def test_the_cache_is_bounded_oldest_out(store_url: str, make_runtime: MakeRuntime) -> None:
    _, _, rt = make_runtime(store_url)
    rt.commands.aggregates.size = 3
    for name in "abcde":
        rt.send(OpenAccount(account_id=name, group="g"))
    assert list(rt.commands.aggregates.entries) == ["Account-c", "Account-d", "Account-e"]
    rt.send(Freeze(account_id="a", reason="r"))  # read from the store, then kept again
    assert list(rt.commands.aggregates.entries) == ["Account-d", "Account-e", "Account-a"]
