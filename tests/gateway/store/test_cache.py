"""The cache side of CachedStore: reads, coalesced loads, bounds, clean-only eviction, forget."""

from __future__ import annotations

import asyncio

import pytest

from gateway.exceptions import StorageUnavailable
from gateway.store import Record

from .conftest import CountingConnector, rec, seed


async def test_a_miss_reads_storage_once_then_serves_from_cache(counting, make_store) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("user/1", 3, {"name": "ann"}))
    assert store.cached("user/1") is None
    assert await store.load("user/1") == Record("user/1", 3, {"name": "ann"})
    assert store.cached("user/1") == Record("user/1", 3, {"name": "ann"})
    assert await store.load("user/1") == Record("user/1", 3, {"name": "ann"})
    assert counting.gets == 1


async def test_a_missing_record_is_none_and_not_cached(counting, make_store) -> None:
    store = await make_store(counting)
    assert await store.load("nope") is None
    assert store.cached("nope") is None
    assert await store.load("nope") is None
    assert counting.gets == 2  # absence is not cached: another writer may create it


async def test_concurrent_loads_of_one_name_share_one_storage_read(counting, make_store) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("a", 1, {"x": 1}), ("b", 1, {"y": 1}))
    counting.read_gate = asyncio.Event()
    loads = [asyncio.create_task(store.load(n)) for n in ["a"] * 10 + ["b"] * 5]
    await asyncio.sleep(0.01)
    counting.read_gate.set()
    results = await asyncio.gather(*loads)
    assert counting.gets == 2
    assert results[:10] == [Record("a", 1, {"x": 1})] * 10
    assert results[10:] == [Record("b", 1, {"y": 1})] * 5


async def test_a_cancelled_loader_does_not_cancel_the_shared_read(counting, make_store) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("a", 1, {"x": 1}))
    counting.read_gate = asyncio.Event()
    impatient = asyncio.create_task(store.load("a"))
    patient = asyncio.create_task(store.load("a"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    counting.read_gate.set()
    assert await patient == Record("a", 1, {"x": 1})
    assert counting.gets == 1


async def test_a_write_during_a_load_outranks_the_stale_read(counting, make_store) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("a", 1, {"old": True}))
    counting.read_gate = asyncio.Event()
    loading = asyncio.create_task(store.load("a"))
    await asyncio.sleep(0.01)
    store.put(rec("a", 2, {"new": True}))
    counting.read_gate.set()
    assert await loading == Record("a", 2, {"new": True})
    assert store.cached("a") == Record("a", 2, {"new": True})


async def test_a_failed_read_is_not_remembered(make_store, memory_url) -> None:
    connector = CountingConnector(memory_url)
    store = await make_store(connector)
    await seed(connector.url, ("a", 1, {}))
    await connector.close()  # the memory connector raises StorageUnavailable when closed
    with pytest.raises(StorageUnavailable):
        await store.load("a")
    await connector.open()
    assert await store.load("a") == Record("a", 1, {})


async def test_the_cache_is_bounded_and_evicts_least_recently_used(counting, make_store) -> None:
    store = await make_store(counting, max_records=3)
    await seed(counting.url, *[(f"r{i}", 1, {"i": i}) for i in range(5)])
    for name in ["r0", "r1", "r2"]:
        await store.load(name)
    store.cached("r0")  # r0 becomes the most recently used; r1 is now the oldest
    await store.load("r3")
    await store.load("r4")
    assert store.stats.cached == 3
    assert [n for n in ["r0", "r1", "r2", "r3", "r4"] if store.cached(n)] == ["r0", "r3", "r4"]
    # Evicted records come back from storage.
    assert await store.load("r1") == Record("r1", 1, {"i": 1})


async def test_dirty_records_are_never_evicted(counting, make_store) -> None:
    store = await make_store(counting, max_records=2)
    for i in range(5):
        store.put(rec(f"d{i}", 1, {"i": i}))
    await seed(counting.url, ("clean", 1, {}))
    await store.load("clean")
    assert all(store.cached(f"d{i}") == rec(f"d{i}", 1, {"i": i}) for i in range(5))
    assert store.stats.cached == 5  # over the bound: only dirty records, which must stay
    await store.flush()
    assert store.stats.cached == 2  # clean now, so the bound applies again
    assert counting.gets == 1


async def test_forget_drops_a_clean_record_so_the_next_load_rereads(counting, make_store) -> None:
    store = await make_store(counting)
    await seed(counting.url, ("a", 1, {"v": 1}))
    await store.load("a")
    await seed(counting.url, ("a", 2, {"v": 2}))  # changed behind our back
    assert (await store.load("a")).version == 1
    store.forget("a")
    assert store.cached("a") is None
    assert await store.load("a") == Record("a", 2, {"v": 2})


async def test_forget_keeps_a_dirty_record(counting, make_store) -> None:
    store = await make_store(counting)
    store.put(rec("a", 1, {"mine": True}))
    store.forget("a")
    assert store.cached("a") == Record("a", 1, {"mine": True})
    await store.flush()
    assert (await counting.get("a")) is not None
