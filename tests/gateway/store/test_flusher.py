"""The write-behind side of CachedStore: coalescing, deletes, ordering, back-pressure,
durability on demand, refused writes and the shutdown flush. Storage writes are counted by a
subclass of the memory reference connector; stored state is read back through a second,
independent connector on the same store."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from connectors.base import Delete, Put
from connectors.memory import MemoryConnector
from gateway.exceptions import BackPressure, StorageRejected, StorageUnavailable
from gateway.store import Record

from .conftest import CountingConnector, rec, seed, until


async def stored(url: str, name: str) -> tuple[int, object] | None:
    async with MemoryConnector(url) as reader:
        snapshot = await reader.get(name)
    return None if snapshot is None else (snapshot.version, snapshot.data)


async def test_writes_reach_storage_on_the_interval(counting, make_store, memory_url) -> None:
    store = await make_store(counting, interval=0.05)
    store.put(rec("a", 1, {"x": 1}))
    assert await stored(memory_url, "a") is None  # write-behind: not yet
    await until(lambda: store.stats.pending == 0)
    assert await stored(memory_url, "a") == (1, {"x": 1})
    assert store.stats.flushed == 1


async def test_coalescing_writes_only_the_newest_snapshot(counting, make_store, memory_url) -> None:
    store = await make_store(counting)
    for version in range(1, 101):
        store.put(rec("hot", version, {"n": version}))
    store.put(rec("cold", 1, {"n": 0}))
    assert store.stats.pending == 2
    await store.flush()
    assert counting.ops == [Put("hot", 100, {"n": 100}), Put("cold", 1, {"n": 0})]
    assert len(counting.batches) == 1
    assert await stored(memory_url, "hot") == (100, {"n": 100})


async def test_without_coalescing_every_version_is_written_in_order(counting, make_store) -> None:
    store = await make_store(counting, coalesce=False)
    for version in range(1, 6):
        store.put(rec("a", version, {"n": version}))
    assert store.stats.pending == 5
    await store.flush()
    assert [op.version for op in counting.ops] == [1, 2, 3, 4, 5]
    assert all(len(batch) == 1 for batch in counting.batches)  # one write of a record at a time


async def test_a_delete_supersedes_queued_writes(counting, make_store, memory_url) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("a", 1, {"old": True}))
    await store.load("a")
    for version in range(2, 6):
        store.put(rec("a", version, {"n": version}))
    await store.delete("a")
    assert store.cached("a") is None
    assert await store.load("a") is None  # gone at once, though storage still holds it
    assert await stored(memory_url, "a") == (1, {"old": True})
    assert store.stats.pending == 1
    await store.flush()
    assert counting.ops == [Delete("a", 5)]
    assert await stored(memory_url, "a") is None


async def test_a_record_recreated_after_a_delete_is_written_after_it(
    counting, make_store, memory_url
) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("a", 7, {"old": True}))
    await store.load("a")
    await store.delete("a")
    store.put(rec("a", 0, {"fresh": True}))  # a new record starts its versions again
    store.put(rec("a", 1, {"fresh": 1}))
    await store.flush()
    assert counting.ops == [Delete("a", 7), Put("a", 1, {"fresh": 1})]
    assert await stored(memory_url, "a") == (1, {"fresh": 1})
    assert store.cached("a") == Record("a", 1, {"fresh": 1})


async def test_deleting_an_unknown_or_deleted_record_queues_nothing_extra(
    counting, make_store
) -> None:
    store = await make_store(counting)
    await store.delete("never")
    assert store.stats.pending == 0
    await seed(counting.url, ("a", 2, {}))
    await store.delete("a")  # not cached: loaded to learn the version to delete up to
    await store.delete("a")
    assert store.stats.pending == 1
    await store.flush()
    assert counting.ops == [Delete("a", 2)]


async def test_one_write_of_a_record_in_flight_and_never_an_older_one_after(
    counting, make_store, memory_url
) -> None:
    store = await make_store(counting)
    counting.write_gate = asyncio.Event()
    store.put(rec("a", 1, {"n": 1}))
    flushing = asyncio.create_task(store.flush())
    await asyncio.sleep(0.02)  # version 1 is now in flight, held at the gate
    store.put(rec("a", 2, {"n": 2}))
    store.put(rec("a", 3, {"n": 3}))
    await store.delete("a")
    store.put(rec("a", 0, {"again": True}))
    counting.write_gate.set()
    await asyncio.wait_for(flushing, 2)
    # CountingConnector fails the test if two writes of "a" overlap.
    assert counting.ops == [Put("a", 1, {"n": 1}), Delete("a", 3), Put("a", 0, {"again": True})]
    assert await stored(memory_url, "a") == (0, {"again": True})


async def test_back_pressure_at_the_pending_cap(counting, make_store) -> None:
    store = await make_store(counting, max_pending=3)
    await seed(counting.url, ("e", 1, {}))
    await store.load("e")
    counting.write_gate = asyncio.Event()  # storage is slow: nothing completes meanwhile
    for name in "abc":
        store.put(rec(name, 1, {}))
    with pytest.raises(BackPressure):
        store.put(rec("d", 1, {"refused": True}))
    assert store.cached("d") is None  # a refused write changes nothing
    store.put(rec("a", 2, {"coalesced": True}))  # replaces a queued write: accepted at the cap
    assert store.cached("a") == Record("a", 2, {"coalesced": True})
    await until(lambda: len(counting.in_flight) == 3)  # half the cap reached: a round started
    with pytest.raises(BackPressure):
        store.put(rec("a", 3, {}))  # would queue behind the write in flight: a 4th pending
    with pytest.raises(BackPressure):
        await store.delete("e")
    assert store.cached("e") == Record("e", 1, {})
    assert store.stats.pending == 3
    counting.write_gate.set()
    await store.flush()
    store.put(rec("d", 1, {"accepted": True}))
    assert store.stats.pending == 1
    assert {(op.name, op.version) for op in counting.ops} == {("a", 2), ("b", 1), ("c", 1)}


async def test_back_pressure_counts_every_version_without_coalescing(counting, make_store) -> None:
    store = await make_store(counting, max_pending=2, coalesce=False)
    store.put(rec("a", 1, {}))
    store.put(rec("a", 2, {}))
    with pytest.raises(BackPressure):
        store.put(rec("a", 3, {}))
    assert store.cached("a") == Record("a", 2, {})


async def test_half_the_cap_starts_a_round_without_waiting_for_the_interval(
    counting, make_store
) -> None:
    store = await make_store(counting, batch_size=4, max_pending=20)
    for i in range(9):
        store.put(rec(f"r{i}", 1, {}))
    for _ in range(20):  # let the flusher run: below the high-water mark, it must not write
        await asyncio.sleep(0)
    assert counting.batches == []
    store.put(rec("r9", 1, {}))  # 10 pending: half the cap
    await until(lambda: store.stats.pending == 0)
    assert [len(b) for b in counting.batches] == [4, 4, 2]  # batch_size sizes the calls
    assert sorted(op.name for op in counting.ops) == sorted(f"r{i}" for i in range(10))


async def test_many_records_changing_often_are_still_coalesced(counting, make_store) -> None:
    store = await make_store(counting, batch_size=10, max_pending=10_000)
    for version in range(1, 21):
        for i in range(100):  # ten times the batch size of distinct records, 20 versions each
            store.put(rec(f"r{i}", version, {"v": version}))
    await store.flush()
    assert len(counting.ops) == 100
    assert {op.version for op in counting.ops} == {20}


async def test_durable_expedites_and_returns_once_stored(counting, make_store, memory_url) -> None:
    store = await make_store(counting)  # the interval (60 s) would never come within the test
    store.put(rec("a", 1, {"n": 1}))
    store.put(rec("other", 1, {}))
    async with asyncio.timeout(2):
        await store.durable("a", 1)
    assert await stored(memory_url, "a") == (1, {"n": 1})
    assert counting.ops == [Put("a", 1, {"n": 1})]  # only the awaited record was hurried
    await store.durable("a", 1)  # already durable: returns at once
    await store.durable("unknown", 5)


async def test_durable_is_satisfied_by_a_newer_version(counting, make_store, memory_url) -> None:
    store = await make_store(counting)
    counting.write_gate = asyncio.Event()
    store.put(rec("a", 1, {"n": 1}))
    first = asyncio.create_task(store.durable("a", 1))
    await asyncio.sleep(0.02)
    store.put(rec("a", 2, {"n": 2}))
    store.put(rec("a", 3, {"n": 3}))
    third = asyncio.create_task(store.durable("a", 3))
    counting.write_gate.set()
    async with asyncio.timeout(2):
        await asyncio.gather(first, third)
    assert [op.version for op in counting.ops] == [1, 3]
    assert await stored(memory_url, "a") == (3, {"n": 3})


async def test_a_refused_record_fails_alone_and_its_waiter_hears_it(
    counting, make_store, memory_url, caplog
) -> None:
    store = await make_store(counting)
    store.put(rec("good", 1, {"ok": True}))
    store.put(rec("bad", 1, {"x": math.nan}))  # Python parses NaN; JSON storage refuses it
    store.put(rec("fine", 1, {"ok": True}))
    with caplog.at_level(logging.ERROR), pytest.raises(StorageRejected):
        await store.durable("bad", 1)
    await store.flush()
    assert store.stats.failed == 1
    assert await stored(memory_url, "good") == (1, {"ok": True})
    assert await stored(memory_url, "fine") == (1, {"ok": True})
    assert await stored(memory_url, "bad") is None
    assert "refused" in caplog.text and "'bad'" in caplog.text


async def test_close_flushes_everything_pending(make_store, memory_url) -> None:
    connector = CountingConnector(memory_url)
    store = await make_store(connector, batch_size=7)
    for i in range(50):
        store.put(rec(f"r{i}", 1, {"i": i}))
    await store.delete("r0")
    await store.close()
    async with MemoryConnector(memory_url) as reader:
        names = [s.name async for s in reader.scan("r")]
    assert sorted(names) == sorted(f"r{i}" for i in range(1, 50))


async def test_close_gives_up_after_the_timeout_and_says_what_is_lost(
    make_store, memory_url, caplog
) -> None:
    connector = CountingConnector(memory_url)
    store = await make_store(connector, shutdown_timeout=0.2)
    connector.write_gate = asyncio.Event()  # storage never answers
    store.put(rec("stuck/1", 1, {}))
    waiter = asyncio.create_task(store.durable("stuck/1", 1))
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(store.close(), 2)
    assert "could not be written" in caplog.text and "'stuck/1'" in caplog.text
    with pytest.raises(StorageUnavailable):
        await waiter


async def test_stats_count_what_happened(counting, make_store) -> None:
    store = await make_store(counting)
    store.put(rec("a", 1, {}))
    store.put(rec("b", 1, {}))
    assert (store.stats.pending, store.stats.dirty, store.stats.flushed) == (2, 2, 0)
    await store.flush()
    stats = store.stats
    assert (stats.pending, stats.dirty, stats.flushed, stats.retried, stats.failed) == (
        0,
        0,
        2,
        0,
        0,
    )
