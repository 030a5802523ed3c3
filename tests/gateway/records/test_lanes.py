"""Lanes: the operations on one record run one at a time, in arrival order, on fresh snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from gateway.exceptions import StorageUnavailable
from gateway.records.lanes import Lanes, Op
from gateway.store import MemoryStore, Record


class GatedStore(MemoryStore):
    """A ``MemoryStore`` whose loads wait for ``gate`` and may fail."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.load_error: Exception | None = None

    async def load(self, name: str) -> Record | None:
        await self.gate.wait()
        if self.load_error is not None:
            raise self.load_error
        return await super().load(name)


def recording(log: list[object], result: Record | None = None, *, tag: str = "") -> Op:
    """An op that logs the version it saw (None: missing) and returns ``result`` or the same."""

    def op(record: Record | None) -> Record | None:
        log.append((tag, None if record is None else record.version))
        return record if result is None else result

    return op


async def test_a_cached_record_with_no_lane_runs_at_once() -> None:
    store = GatedStore()
    store.put(Record("a", 1, {}))
    lanes, seen = Lanes(store), []
    assert lanes.run("a", recording(seen), seen.append) is None
    assert seen == [("", 1)]


async def test_a_miss_queues_and_later_ops_see_the_snapshot_before_them() -> None:
    store, seen = GatedStore(), []
    store.gate.clear()
    lanes = Lanes(store)
    first = lanes.run("a", recording(seen, Record("a", 1, {}), tag="1"), seen.append)
    second = lanes.run("a", recording(seen, Record("a", 2, {}), tag="2"), seen.append)
    assert first is not None and second is not None
    await asyncio.sleep(0)
    assert seen == []  # waiting for the load
    store.gate.set()
    await second
    assert seen == [("1", None), ("2", 1)]


async def test_a_cached_record_queues_behind_an_open_lane() -> None:
    store, seen = GatedStore(), []
    store.put(Record("a", 1, {}))
    lanes, release = Lanes(store), asyncio.Event()

    async def slow(record: Record | None) -> Record | None:
        await release.wait()
        seen.append(("slow", record.version if record else None))
        return Record("a", 5, {})

    assert lanes.run("a", slow, seen.append, sync=False) is not None
    behind = lanes.run("a", recording(seen, tag="sync"), seen.append)
    assert behind is not None and seen == []  # not run on the cached v1
    release.set()
    await behind
    assert seen == [("slow", 1), ("sync", 5)]
    # The lane closed with its queue: the next op on the cached record is synchronous again.
    assert lanes.run("a", recording(seen, tag="after"), seen.append) is None
    assert seen[-1] == ("after", 1)  # the store's snapshot: an op's result is not a put


async def test_a_failed_load_reaches_every_queued_op_and_runs_none() -> None:
    store = GatedStore()
    store.load_error = StorageUnavailable("down")
    lanes, seen, errors = Lanes(store), [], []
    waiters = [lanes.run("a", recording(seen), errors.append) for _ in range(3)]
    await asyncio.gather(*(w for w in waiters if w is not None))
    assert seen == [] and errors == [store.load_error] * 3
    store.load_error = None
    await _ran(lanes.run("a", recording(seen), errors.append))
    assert seen == [("", None)]  # the failed lane did not linger


async def test_a_failing_op_is_reported_and_the_next_sees_the_snapshot_before_it() -> None:
    store, seen, errors = GatedStore(), [], []
    store.put(Record("a", 1, {}))
    lanes = Lanes(store)

    async def fail(record: Record | None) -> Record | None:
        raise StorageUnavailable("write failed")

    failed = lanes.run("a", fail, errors.append, sync=False)
    after = lanes.run("a", recording(seen), seen.append)
    assert failed is not None and after is not None
    await after
    assert [type(e) for e in errors] == [StorageUnavailable] and seen == [("", 1)]


async def test_defer_queues_only_behind_an_open_lane() -> None:
    store, seen = GatedStore(), []
    lanes = Lanes(store)
    assert not lanes.defer("a", recording(seen))
    assert seen == []  # not run: without a lane the caller acts itself
    store.gate.clear()
    waiter = lanes.run("a", recording(seen, tag="write"), seen.append)
    assert lanes.defer("a", recording(seen, Record("a", 7, {}), tag="pushed"))
    last = lanes.run("a", recording(seen, tag="next"), seen.append)
    store.gate.set()
    assert waiter is not None and last is not None
    await last
    assert seen == [("write", None), ("pushed", None), ("next", 7)]


async def test_each_finishes_at_once_when_everything_ran_synchronously() -> None:
    store, seen, finished = GatedStore(), [], []
    store.put(Record("a", 1, {}))
    store.put(Record("b", 2, {}))
    lanes = Lanes(store)
    result = lanes.each(
        ["a", "b"],
        lambda name: recording(seen, tag=name),
        lambda name: seen.append,
        finish=lambda: finished.append(list(seen)),
    )
    assert result is None
    assert finished == [[("a", 1), ("b", 2)]]


async def test_each_finishes_after_the_last_queued_op() -> None:
    store, seen, finished = GatedStore(), [], []
    store.put(Record("a", 1, {}))
    lanes = Lanes(store)
    result = lanes.each(
        ["a", "missing", "a"],
        lambda name: recording(seen, tag=name),
        lambda name: seen.append,
        sync=False,
        finish=lambda: finished.append(list(seen)),
    )
    assert result is not None and finished == []
    await result
    assert len(finished) == 1  # once, having seen every op (lanes of two names interleave)
    assert sorted(finished[0], key=repr) == [("a", 1), ("a", 1), ("missing", None)]


async def _ran(waiter: Awaitable[None] | None) -> None:
    if waiter is not None:
        await waiter
