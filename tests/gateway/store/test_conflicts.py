"""Conflicts at flush time, end to end on every real backend: a second writer (a data team,
another server) changes storage through its own connector, then our flush meets it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.base import Connector
from gateway.exceptions import WriteDiscarded
from gateway.store import CachedStore, Record

from .conftest import Backend, CountingConnector, rec, seed

Changes = list[tuple[str, Record | None]]


@pytest.fixture
async def other(backend: Backend) -> AsyncIterator[Connector]:
    """The second writer: its own connector on the same store."""
    async with backend.connector() as connector:
        yield connector


async def open_store(make_store: Any, backend: Backend, policy: str) -> tuple[CachedStore, Changes]:
    store: CachedStore = await make_store(backend.connector(), conflict_policy=policy)
    changes: Changes = []
    store.on_external_change = lambda name, record: changes.append((name, record))
    return store, changes


async def stored(connector: Connector, name: str) -> tuple[int, Any] | None:
    snapshot = await connector.get(name)
    return None if snapshot is None else (snapshot.version, snapshot.data)


async def clash(store: CachedStore, other: Connector, theirs: tuple[int, Any]) -> None:
    """Base v1 {a:1, b:1}; we write v2 {a:2, b:1}; they write ``theirs``; we flush."""
    await seed(other, ("doc", 1, {"a": 1, "b": 1}))
    await store.load("doc")
    store.put(rec("doc", 2, {"a": 2, "b": 1}))
    await seed(other, ("doc", *theirs))
    await store.flush()
    assert store.stats.conflicts == 1


@pytest.mark.parametrize(
    ("policy", "theirs", "expected"),
    [
        # Same version, other data: the resolved state needs a version clients have not seen.
        ("storage-wins", (2, {"a": 1, "b": 3}), (3, {"a": 1, "b": 3})),
        ("gateway-wins", (2, {"a": 1, "b": 3}), (3, {"a": 2, "b": 1})),
        ("merge", (2, {"a": 1, "b": 3}), (3, {"a": 2, "b": 3})),
        # Theirs far ahead: adopted as stored, or ours/merged written on top of it.
        ("storage-wins", (5, {"a": 1, "c": 1}), (5, {"a": 1, "c": 1})),
        ("gateway-wins", (5, {"a": 1, "c": 1}), (6, {"a": 2, "b": 1})),
        ("merge", (5, {"a": 1, "c": 1}), (6, {"a": 2, "c": 1})),
        # Both changed field a: ours wins the clash, their other change still merges in.
        ("merge", (2, {"a": 3, "b": 3}), (3, {"a": 2, "b": 3})),
    ],
)
async def test_a_conflict_resolves_by_policy_in_cache_storage_and_subscribers(
    make_store, backend, other, policy, theirs, expected
) -> None:
    store, changes = await open_store(make_store, backend, policy)
    await clash(store, other, theirs)
    version, data = expected
    assert store.cached("doc") == Record("doc", version, data)
    assert await stored(other, "doc") == (version, data)
    assert changes == [("doc", Record("doc", version, data))]
    assert store.stats.pending == 0


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("storage-wins", (4, {"z": 1})),  # their change brings the record back
        ("gateway-wins", None),  # our delete stands
        ("merge", None),  # nothing left of ours to merge: the delete stands
    ],
)
async def test_a_delete_meeting_a_newer_stored_version(
    make_store, backend, other, policy, expected
) -> None:
    store, changes = await open_store(make_store, backend, policy)
    await seed(other, ("doc", 1, {"a": 1}))
    await store.load("doc")
    await seed(other, ("doc", 4, {"z": 1}))  # behind our back: our delete (of v1) will conflict
    deleted = await store.delete("doc")  # expedited: a delete is always awaited by its client
    await store.flush()
    assert await stored(other, "doc") == expected
    async with asyncio.timeout(5):
        if expected is None:
            await deleted  # DELETE_SUCCESS
        else:
            with pytest.raises(WriteDiscarded):  # RECORD_DELETE_ERROR: the record is back
                await deleted
    if expected is None:
        assert store.cached("doc") is None and await store.load("doc") is None
        assert changes == []
    else:
        assert store.cached("doc") == Record("doc", *expected)
        assert changes == [("doc", Record("doc", *expected))]


async def test_durable_returns_once_the_conflict_is_resolved_in_storage(
    make_store, backend, other
) -> None:
    store, _ = await open_store(make_store, backend, "gateway-wins")
    await seed(other, ("doc", 1, {"a": 1}))
    await store.load("doc")
    store.put(rec("doc", 2, {"a": 2}))
    await seed(other, ("doc", 2, {"a": "theirs"}))
    async with asyncio.timeout(5):
        await store.durable("doc", 2)
    assert await stored(other, "doc") == (3, {"a": 2})


# Races inside one flush need a write held in flight: the counting memory connector does that.


async def test_gateway_wins_keeps_newer_cached_versions_without_a_push(
    make_store, memory_url
) -> None:
    connector = CountingConnector(memory_url)
    store: CachedStore = await make_store(connector, conflict_policy="gateway-wins")
    changes: Changes = []
    store.on_external_change = lambda name, record: changes.append((name, record))
    connector.write_gate = asyncio.Event()
    store.put(rec("doc", 1, {"n": 1}))
    flushing = asyncio.create_task(store.flush())
    await asyncio.sleep(0.02)  # our version 1 is in flight
    await seed(memory_url, ("doc", 1, {"n": "theirs"}))
    store.put(rec("doc", 2, {"n": 2}))
    store.put(rec("doc", 3, {"n": 3}))
    connector.write_gate.set()
    await asyncio.wait_for(flushing, 2)
    assert [op.version for op in connector.ops] == [1, 3]
    assert store.cached("doc") == Record("doc", 3, {"n": 3})
    assert changes == []  # clients already hold version 3 with this data


async def test_storage_wins_drops_our_unflushed_newer_versions(make_store, memory_url) -> None:
    connector = CountingConnector(memory_url)
    store: CachedStore = await make_store(connector, conflict_policy="storage-wins")
    changes: Changes = []
    store.on_external_change = lambda name, record: changes.append((name, record))
    connector.write_gate = asyncio.Event()
    store.put(rec("doc", 1, {"n": 1}))
    flushing = asyncio.create_task(store.flush())
    await asyncio.sleep(0.02)
    await seed(memory_url, ("doc", 1, {"n": "theirs"}))
    store.put(rec("doc", 2, {"n": 2}))
    connector.write_gate.set()
    await asyncio.wait_for(flushing, 2)
    # Clients saw version 2, so their data comes back as version 3 and is written so.
    assert store.cached("doc") == Record("doc", 3, {"n": "theirs"})
    assert changes == [("doc", Record("doc", 3, {"n": "theirs"}))]
    assert connector.ops[-1].version == 3
    assert all(getattr(op, "data", None) != {"n": 2} for op in connector.ops)


@pytest.mark.parametrize(
    ("policy", "theirs", "kept"),
    [
        ("storage-wins", (2, {"a": 1, "b": 3}), False),
        ("storage-wins", (5, {"a": 2, "b": 1}), False),  # even equal data: our version is gone
        ("gateway-wins", (5, {"a": 3, "c": 1}), True),
        ("merge", (2, {"a": 1, "b": 3}), True),  # disjoint: both changes in the merge
        ("merge", (5, {"a": 3, "b": 3}), True),  # a clash on a: ours wins, so ours is kept
    ],
)
async def test_a_waiting_acknowledgement_fails_when_the_resolution_drops_the_write(
    make_store, backend, other, policy, theirs, kept
) -> None:
    """Base v1 {a:1, b:1}; storage changes behind our back; then we write v2 {a:2, b:1} and
    wait for it to be durable, as a write acknowledgement does."""
    store, _ = await open_store(make_store, backend, policy)
    await seed(other, ("doc", 1, {"a": 1, "b": 1}))
    await store.load("doc")
    await seed(other, ("doc", *theirs))
    store.put(rec("doc", 2, {"a": 2, "b": 1}))
    async with asyncio.timeout(5):
        if not kept:
            with pytest.raises(WriteDiscarded, match="conflict_policy storage-wins"):
                await store.durable("doc", 2)
            await store.flush()
            assert (await stored(other, "doc") or (0, {}))[1] == theirs[1]
            return
        await store.durable("doc", 2)
    version, data = await stored(other, "doc") or (0, {})
    assert version > theirs[0] and data["a"] == 2  # what we acknowledged is in storage


async def test_a_delete_resolves_once_storage_has_it_not_when_its_version_was_stored(
    make_store, backend, other
) -> None:
    """The delete of v1 comes after the put of v1: the stored put does not settle it."""
    store, _ = await open_store(make_store, backend, "storage-wins")
    store.put(rec("doc", 1, {"a": 1}))
    await store.durable("doc", 1)
    assert await stored(other, "doc") == (1, {"a": 1})
    deleted = await store.delete("doc")
    assert not deleted.done()  # v1 is stored, but the delete is not yet
    async with asyncio.timeout(5):
        await deleted  # expedited, not left for the (slow) interval
    assert await stored(other, "doc") is None
    again = await store.delete("doc")  # nothing left to delete: settled at once
    assert again.done() and again.exception() is None
