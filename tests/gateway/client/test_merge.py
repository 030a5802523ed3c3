"""Write conflicts: two clients racing on one version, resolved by merge strategies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.client import LOCAL_WINS, REMOTE_WINS
from gateway.exceptions import RecordError

from .conftest import settle


async def race(*writes: Any) -> list[BaseException | None]:
    """Start every write before any reaches the server, so all but one meet VERSION_EXISTS."""
    return await asyncio.gather(*writes, return_exceptions=True)


async def test_remote_wins_by_default_and_the_loser_is_told(make_client) -> None:
    alice, bob, carol = await make_client("alice"), await make_client("bob"), await make_client()
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    results = await race(a.set({"by": "alice"}), b.set({"by": "bob"}))
    errors = [r for r in results if r is not None]
    assert len(errors) == 1, results
    assert isinstance(errors[0], RecordError) and errors[0].code == "VERSION_EXISTS"
    winner = "alice" if results[0] is None else "bob"
    assert a.data == b.data == {"by": winner} == await carol.record.snapshot("doc")
    assert a.version == b.version == 1 == await carol.record.head("doc")


async def test_local_wins_writes_its_data_over_the_server_version(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob", merge_strategy=LOCAL_WINS)
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    await race(a.set({"by": "alice"}), b.set({"by": "bob"}))
    # Whoever reached the server first, bob's data ends up everywhere: if bob lost the race,
    # he wrote it again at the server's version + 1; if alice lost, she adopted it.
    await settle(alice)
    for _ in range(50):
        if a.data == {"by": "bob"}:
            break
        await asyncio.sleep(0.02)
    assert a.data == b.data == {"by": "bob"} == await alice.record.snapshot("doc")
    assert a.version == b.version == await bob.record.head("doc")
    assert a.version in (1, 2)


async def test_a_custom_strategy_merges_both_writes(make_client) -> None:
    def union(local: Any, local_version: int, remote: Any, remote_version: int) -> Any:
        return {**remote, **local}

    alice = await make_client("alice", merge_strategy=union)
    bob = await make_client("bob", merge_strategy=union)
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    results = await race(a.set("a", 1), b.set("b", 2))
    assert results == [None, None]  # the loser's merged write was acknowledged instead
    for _ in range(50):
        if a.data == b.data == {"a": 1, "b": 2}:
            break
        await asyncio.sleep(0.02)
    assert a.data == b.data == {"a": 1, "b": 2}
    assert a.version == b.version == 2


async def test_unacknowledged_conflicting_writes_converge(make_client) -> None:
    alice, bob, carol = await make_client("alice"), await make_client("bob"), await make_client()
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    await race(a.set({"n": 1}, ack=False), b.set({"n": 2}, ack=False))
    await asyncio.gather(settle(alice), settle(bob))
    server = await carol.record.snapshot("doc")
    assert a.data == b.data == server and server in ({"n": 1}, {"n": 2})
    assert a.version == b.version == 1


async def test_a_per_record_strategy_overrides_the_clients(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob", merge_strategy=LOCAL_WINS)
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    b.set_merge_strategy(REMOTE_WINS)
    results = await race(a.set({"by": "alice"}), b.set({"by": "bob"}))
    assert sum(r is not None for r in results) == 1  # nobody rewrites: one write is dropped


async def test_a_failing_strategy_adopts_the_server_state(make_client) -> None:
    def broken(local: Any, local_version: int, remote: Any, remote_version: int) -> Any:
        raise RuntimeError("merge bug")

    alice, bob = await make_client("alice"), await make_client("bob", merge_strategy=broken)
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    results = await race(a.set({"by": "alice"}), b.set({"by": "bob"}))
    if results[1] is not None:  # bob lost: his strategy ran and failed
        assert isinstance(results[1], RecordError) and results[1].code == "VERSION_EXISTS"
    await asyncio.gather(settle(alice), settle(bob))
    assert a.data == b.data


async def test_a_lost_write_is_refused_even_after_a_newer_update_replaced_it(make_client) -> None:
    """Found by the history check (tests/history): alice writes v1 while bob's v1 and carol's v2
    are already on their way to her; she adopts v2 (newer than her write), so her data equals
    the server's when VERSION_EXISTS arrives. Her write was still refused: she must be told, not
    acknowledged (comparing the conflict with her current data had acknowledged it)."""
    alice, bob, carol = await make_client("alice"), await make_client("bob"), await make_client()
    a, b = await alice.record.get("doc"), await bob.record.get("doc")
    transport = alice.connection._ws.transport  # private: holding alice's reads orders the race
    transport.pause_reading()
    await b.set({"by": "bob"})  # v1
    await carol.record.set_data("doc", {"by": "carol"})  # v2, forced
    writing = asyncio.create_task(a.set({"by": "alice"}))  # at v1: refused with v2
    await asyncio.sleep(0.05)
    transport.resume_reading()
    with pytest.raises(RecordError) as refused:
        await writing
    assert refused.value.code == "VERSION_EXISTS"
    assert a.data == {"by": "carol"} == await bob.record.snapshot("doc")
    assert a.version == 2
