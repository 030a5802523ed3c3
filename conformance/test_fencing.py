"""Fencing (the ``"fenced"`` capability): a write with a fence lower than one already applied to
the name is refused, also after the record was deleted, so a stalled writer can never undo a
delete and a re-create done after it. Each failure message starts with ``rule: fenced``.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from conformance.bounded import BoundedConnector
from conformance.plugin import MakeConnector
from connectors.base import Connector, Delete, Outcome, Put, RawReader, Snapshot, WriteResult

pytestmark = [pytest.mark.asyncio, pytest.mark.requires("fenced")]

MAX = 2**63 - 1
PAUSE = 1.1  # seconds: long enough for a moved timestamp to show at one-second granularity
WRITERS = 20


def _fenced(result: WriteResult, stored_fence: int, current: Snapshot | None, rule: str) -> None:
    assert result.outcome is Outcome.FENCED, f"{rule}: {result.op} gave {result.outcome}"
    assert result.fence == stored_fence and type(result.fence) is int, (
        f"{rule}: a FENCED result carries the stored fence {stored_fence}, got {result.fence!r}"
    )
    assert result.current == current, (
        f"{rule}: a FENCED result carries what is stored ({current}), got {result.current}"
    )


def _applied(result: WriteResult, rule: str) -> None:
    assert result.outcome is Outcome.APPLIED, f"{rule}: {result.op} gave {result.outcome}"
    assert result.fence is None and result.current is None, (
        f"rule: fenced: an APPLIED result has no fence and no current: {result}"
    )


async def _invisible(connector: Connector, name: str, prefix: str, rule: str) -> None:
    assert await connector.get(name) is None, f"{rule} (get)"
    assert await connector.head(name) is None, f"{rule} (head)"
    assert await connector.get_many([name]) == {}, f"{rule} (get_many)"
    assert name not in [s.name async for s in connector.scan(prefix)], f"{rule} (scan)"


async def test_lower_fence_refused_higher_applies(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/r"
    _applied((await connector.write([Put(name, 1, {"v": 1}, fence=5)]))[0], "rule: fenced put")
    [result] = await connector.write([Put(name, 2, {"v": 2}, fence=4)])
    rule = "rule: fenced: a put with a fence lower than the stored one is refused"
    _fenced(result, 5, Snapshot(name, 1, {"v": 1}), rule)
    assert await connector.get(name) == Snapshot(name, 1, {"v": 1}), rule
    [result] = await connector.write([Delete(name, 1, fence=4)])
    rule = "rule: fenced: a delete with a fence lower than the stored one is refused"
    _fenced(result, 5, Snapshot(name, 1, {"v": 1}), rule)
    assert await connector.get(name) == Snapshot(name, 1, {"v": 1}), rule
    [result] = await connector.write([Put(name, 2, {"v": 2}, fence=6)])
    _applied(result, "rule: fenced: a higher fence applies by the version rules")
    assert await connector.get(name) == Snapshot(name, 2, {"v": 2})


async def test_reads_report_no_fence(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/read"
    await connector.write([Put(name, 3, {"v": 3}, fence=9)])
    rule = "rule: fenced: snapshots returned by reads have fence None"
    got = await connector.get(name)
    assert got is not None and got.fence is None, rule
    assert (await connector.get_many([name]))[name].fence is None, rule
    assert [s.fence async for s in connector.scan(name_prefix)] == [None], rule
    [result] = await connector.write([Put(name, 2, {"v": 2}, fence=10)])
    assert result.outcome is Outcome.CONFLICT and result.fence is None, (
        "rule: fenced: a CONFLICT result has fence None"
    )
    assert result.current is not None and result.current.fence is None, rule


async def test_stale_put_after_delete_refused(connector: Connector, name_prefix: str) -> None:
    """The stalled writer's put lands after another node deleted the record."""
    name = f"{name_prefix}/deleted"
    await connector.write([Put(name, 3, {"v": 3}, fence=3)])
    _applied((await connector.write([Delete(name, 3, fence=4)]))[0], "rule: fenced delete")
    [result] = await connector.write([Put(name, 5, {"stale": True}, fence=3)])
    rule = "rule: fenced: the fence is kept when the record is deleted (a stale put is refused)"
    _fenced(result, 4, None, rule)
    await _invisible(connector, name, name_prefix, f"{rule}; the tombstone is no record")


async def test_stale_put_after_delete_of_missing_refused(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/never"
    [result] = await connector.write([Delete(name, 1, fence=7)])
    _applied(result, "rule: fenced: deleting a missing record succeeds")
    rule = "rule: fenced: a fenced delete of a missing record records its fence (a tombstone)"
    _fenced((await connector.write([Put(name, 9, {"stale": 1}, fence=6)]))[0], 7, None, rule)
    _fenced((await connector.write([Delete(name, 9, fence=6)]))[0], 7, None, rule)
    await _invisible(connector, name, name_prefix, f"{rule}; the tombstone is no record")
    [result] = await connector.write([Delete(name, 1, fence=8)])
    _applied(result, "rule: fenced: deleting nothing with a higher fence applies")
    rule = "rule: fenced: deleting nothing raises the stored fence"
    _fenced((await connector.write([Put(name, 1, {"x": 1}, fence=7)]))[0], 8, None, rule)
    [result] = await connector.write([Put(name, 1, {"x": 1}, fence=8)])
    _applied(result, "rule: fenced: an equal fence applies (re-create over a tombstone)")
    assert await connector.get(name) == Snapshot(name, 1, {"x": 1})


async def test_stale_writes_after_recreate_leave_the_new_record(
    connector: Connector, name_prefix: str
) -> None:
    """The hole fencing closes: version 5, deleted, re-created from version 1 by another node;
    the stalled node's put of version 5 (or its delete of 5) then lands. Without fences both
    win the version rules against version 1."""
    name = f"{name_prefix}/phoenix"
    await connector.write([Put(name, 5, {"life": 1}, fence=5)])
    await connector.write([Delete(name, 5, fence=6)])
    _applied(
        (await connector.write([Put(name, 1, {"life": 2}, fence=7)]))[0],
        "rule: fenced: a higher fence re-creates a deleted record from any version",
    )
    reborn = Snapshot(name, 1, {"life": 2})
    rule = "rule: fenced: a stale delete after a re-create leaves the re-created record"
    _fenced((await connector.write([Delete(name, 5, fence=6)]))[0], 7, reborn, rule)
    _fenced((await connector.write([Delete(name, 5, fence=5)]))[0], 7, reborn, rule)
    assert await connector.get(name) == reborn, rule
    rule = "rule: fenced: a stale put after a re-create leaves the re-created record"
    _fenced((await connector.write([Put(name, 5, {"life": 1}, fence=5)]))[0], 7, reborn, rule)
    _fenced((await connector.write([Put(name, 6, {"life": 1}, fence=6)]))[0], 7, reborn, rule)
    assert await connector.get(name) == reborn, rule
    assert await connector.head(name) == 1, rule


async def test_equal_fence_idempotent_retry(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/retry"
    await connector.write([Put(name, 2, {"a": [1]}, fence=3)])
    [result] = await connector.write([Put(name, 2, {"a": [1]}, fence=3)])
    _applied(result, "rule: fenced: the same put with an equal fence is an idempotent retry")
    [result] = await connector.write([Put(name, 2, {"a": [1]}, fence=8)])
    _applied(result, "rule: fenced: an idempotent retry with a higher fence applies")
    rule = "rule: fenced: an idempotent retry raises the stored fence"
    _fenced(
        (await connector.write([Put(name, 3, {}, fence=7)]))[0],
        8,
        Snapshot(name, 2, {"a": [1]}),
        rule,
    )
    [result] = await connector.write([Put(name, 2, {"a": [2]}, fence=8)])
    rule = "rule: fenced: an equal fence with different data of the same version is a CONFLICT"
    assert result.outcome is Outcome.CONFLICT and result.fence is None, rule
    assert result.current == Snapshot(name, 2, {"a": [1]}), rule
    await connector.write([Delete(name, 2, fence=9)])
    [result] = await connector.write([Delete(name, 2, fence=9)])
    _applied(result, "rule: fenced: a retried fenced delete (equal fence) succeeds")


async def test_conflict_leaves_the_fence(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/conflict"
    await connector.write([Put(name, 5, {"v": 5}, fence=10)])
    rule = "rule: fenced: a higher fence does not override the version rules"
    [result] = await connector.write([Put(name, 4, {"v": 4}, fence=20)])
    assert result.outcome is Outcome.CONFLICT, rule
    assert result.current == Snapshot(name, 5, {"v": 5}), rule
    [result] = await connector.write([Delete(name, 4, fence=30)])
    assert result.outcome is Outcome.CONFLICT, rule
    assert await connector.get(name) == Snapshot(name, 5, {"v": 5}), rule
    [result] = await connector.write([Put(name, 6, {"v": 6}, fence=15)])
    _applied(result, "rule: fenced: a CONFLICT changes nothing, the fence included")
    [result] = await connector.write([Delete(name, 6, fence=14)])
    _fenced(result, 15, Snapshot(name, 6, {"v": 6}), "rule: fenced: the applied fence is kept")


@pytest.mark.requires("raw")
async def test_refused_changes_nothing_stored(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    name = f"{name_prefix}/still"
    await connector.write([Put(name, 5, {"v": 5}, fence=10)])
    before = await raw_reader.read_raw(name)
    assert before is not None
    await asyncio.sleep(PAUSE)
    ops: list[Put | Delete] = [Put(name, 6, {"v": 6}, fence=9)]
    ops_delete: list[Put | Delete] = [Delete(name, 6, fence=0)]
    rule = "rule: fenced: a refused op changes nothing stored (data, version, timestamp, fence)"
    _fenced((await connector.write(ops))[0], 10, Snapshot(name, 5, {"v": 5}), rule)
    _fenced((await connector.write(ops_delete))[0], 10, Snapshot(name, 5, {"v": 5}), rule)
    after = await raw_reader.read_raw(name)
    assert after is not None
    for key in ("name", "collection", "version", "data", "updated_at"):
        assert after[key] == before[key], f"{rule}: {key} {before[key]!r} -> {after[key]!r}"
    # Neither lowered to 9 or 0 nor dropped: 9 is still refused.
    _fenced((await connector.write(ops))[0], 10, Snapshot(name, 5, {"v": 5}), rule)
    assert await raw_reader.count_raw(name_prefix) == 1, rule


@pytest.mark.requires("raw")
async def test_tombstones_invisible_to_every_read(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    p = name_prefix
    live = [f"{p}/a", f"{p}/c", f"{p}/e"]
    await connector.write([Put(n, 1, {"n": n}, fence=1) for n in [*live, f"{p}/b"]])
    # b: deleted with a fence; d: a fenced delete of a name never stored; f: after the last.
    await connector.write([Delete(f"{p}/b", 1, fence=2), Delete(f"{p}/d", 1, fence=2)])
    await connector.write([Delete(f"{p}/f", 0, fence=MAX)])
    rule = "rule: fenced: tombstones are invisible as records"
    for gone in (f"{p}/b", f"{p}/d", f"{p}/f"):
        await _invisible(connector, gone, p, f"{rule}: {gone}")
        assert await raw_reader.read_raw(gone) is None, f"{rule} (read_raw): {gone}"
    assert [s.name async for s in connector.scan(p)] == live, f"{rule} (scan)"
    assert [s.name async for s in connector.scan(f"{p}/d")] == [], f"{rule} (scan)"
    assert await raw_reader.count_raw(p) == 3, f"{rule} (count_raw)"
    assert await raw_reader.count_raw(f"{p}/f") == 0, f"{rule} (count_raw)"
    got = await connector.get_many([f"{p}/{c}" for c in "abcdef"])
    assert sorted(got) == live, f"{rule} (get_many)"


async def test_largest_fence_exact(connector: Connector, name_prefix: str) -> None:
    """2**63-1 and 2**63-2 are one double (so are 2**53 and 2**53+1): compared as doubles,
    the lower fence would pass."""
    name = f"{name_prefix}/max"
    rule = "rule: fenced: fences are exact integers up to 2**63-1, compared exactly"
    _applied((await connector.write([Put(name, 1, {"v": 1}, fence=0)]))[0], rule)
    _applied((await connector.write([Put(name, 2, {"v": 2}, fence=2**53 + 1)]))[0], rule)
    _fenced(
        (await connector.write([Put(name, 3, {}, fence=2**53)]))[0],
        2**53 + 1,
        Snapshot(name, 2, {"v": 2}),
        rule,
    )
    _applied((await connector.write([Put(name, 3, {"v": 3}, fence=MAX)]))[0], rule)
    _fenced(
        (await connector.write([Put(name, 4, {}, fence=MAX - 1)]))[0],
        MAX,
        Snapshot(name, 3, {"v": 3}),
        rule,
    )
    _fenced(
        (await connector.write([Delete(name, 4, fence=MAX - 1)]))[0],
        MAX,
        Snapshot(name, 3, {"v": 3}),
        rule,
    )
    _applied((await connector.write([Delete(name, 3, fence=MAX)]))[0], rule)
    _fenced((await connector.write([Put(name, 1, {}, fence=MAX - 1)]))[0], MAX, None, rule)
    _applied((await connector.write([Put(name, 1, {"v": 1}, fence=MAX)]))[0], rule)


async def test_unfenced_ops_ignore_fences(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/mixed"
    await connector.write([Put(name, 1, {"v": 1}, fence=10)])
    rule = "rule: fenced: unfenced ops apply by the version rules alone"
    _applied((await connector.write([Put(name, 2, {"v": 2})]))[0], rule)
    assert await connector.get(name) == Snapshot(name, 2, {"v": 2}), rule
    rule = "rule: fenced: an unfenced op leaves the stored fence unchanged"
    _fenced(
        (await connector.write([Put(name, 3, {}, fence=9)]))[0],
        10,
        Snapshot(name, 2, {"v": 2}),
        rule,
    )
    [result] = await connector.write([Put(name, 1, {"old": 1})])
    assert result.outcome is Outcome.CONFLICT, "rule: fenced: unfenced ops keep the version rules"
    ghost = f"{name_prefix}/ghost"
    await connector.write([Delete(ghost, 1, fence=10)])
    rule = "rule: fenced: an unfenced put over a tombstone applies"
    _applied((await connector.write([Put(ghost, 1, {"g": 1})]))[0], rule)
    assert await connector.get(ghost) == Snapshot(ghost, 1, {"g": 1}), rule
    rule = "rule: fenced: an unfenced put over a tombstone leaves its fence"
    _fenced(
        (await connector.write([Put(ghost, 2, {}, fence=9)]))[0],
        10,
        Snapshot(ghost, 1, {"g": 1}),
        rule,
    )
    _applied((await connector.write([Delete(ghost, 1)]))[0], "rule: fenced: unfenced delete")
    assert await connector.get(ghost) is None
    [result] = await connector.write([Put(ghost, 2, {"g": 2}, fence=11)])
    _applied(result, "rule: fenced: a higher fence applies after an unfenced delete")


async def test_fences_survive_reopen(make_connector: MakeConnector, name_prefix: str) -> None:
    live, gone = f"{name_prefix}/live", f"{name_prefix}/gone"
    writer = await make_connector()
    await writer.write([Put(live, 1, {"v": 1}, fence=5), Put(gone, 1, {"v": 1}, fence=5)])
    await writer.write([Delete(gone, 1, fence=6)])
    await writer.close()
    reader = await make_connector()
    rule = "rule: fenced: fences are committed with the write (they survive close and reopen)"
    [a, b] = await reader.write([Put(live, 9, {}, fence=4), Put(gone, 9, {}, fence=5)])
    _fenced(a, 5, Snapshot(live, 1, {"v": 1}), rule)
    _fenced(b, 6, None, rule)
    await writer.open()
    [a] = await writer.write([Delete(live, 9, fence=4)])
    _fenced(a, 5, Snapshot(live, 1, {"v": 1}), rule)


async def test_batch_mixing_outcomes(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    await connector.write(
        [
            Put(f"{p}/fenced", 1, {"f": 1}, fence=10),
            Put(f"{p}/conflict", 5, {"c": 5}, fence=10),
            Put(f"{p}/unfenced", 1, {"u": 1}, fence=10),
            Put(f"{p}/delete", 1, {"d": 1}, fence=10),
        ]
    )
    await connector.write([Delete(f"{p}/tomb", 1, fence=10)])
    ops: list[Put | Delete] = [
        Put(f"{p}/new", 1, {"n": 1}, fence=3),  # applied: nothing stored
        Put(f"{p}/fenced", 2, {"f": 2}, fence=9),  # fenced
        Put(f"{p}/conflict", 4, {"c": 4}, fence=11),  # conflict: fence ok, version lower
        Put(f"{p}/unfenced", 2, {"u": 2}),  # applied: unfenced ignores the fence
        Delete(f"{p}/tomb", 1, fence=4),  # fenced: a tombstone, current None
        Delete(f"{p}/delete", 1, fence=10),  # applied: equal fence
        Delete(f"{p}/missing", 1, fence=1),  # applied: nothing to delete
        Put(f"{p}/plain", 1, {"p": 1}),  # applied: unfenced, nothing stored
    ]
    results = await connector.write(ops)
    rule = "rule: fenced: a batch mixing fenced and unfenced ops answers each, in order"
    assert [r.op for r in results] == ops, rule
    assert [r.outcome for r in results] == [
        Outcome.APPLIED,
        Outcome.FENCED,
        Outcome.CONFLICT,
        Outcome.APPLIED,
        Outcome.FENCED,
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ], rule
    assert [r.fence for r in results] == [None, 10, None, None, 10, None, None, None], rule
    assert results[1].current == Snapshot(f"{p}/fenced", 1, {"f": 1}), rule
    assert results[2].current == Snapshot(f"{p}/conflict", 5, {"c": 5}), rule
    assert results[4].current is None, rule
    stored = await connector.get_many([op.name for op in ops])
    assert {n: (s.version, s.data) for n, s in stored.items()} == {
        f"{p}/new": (1, {"n": 1}),
        f"{p}/fenced": (1, {"f": 1}),
        f"{p}/conflict": (5, {"c": 5}),
        f"{p}/unfenced": (2, {"u": 2}),
        f"{p}/plain": (1, {"p": 1}),
    }, rule
    # The batch's applied fences are kept: new at 3, missing at 1.
    [a, b] = await connector.write(
        [Put(f"{p}/new", 2, {}, fence=2), Put(f"{p}/missing", 1, {}, fence=0)]
    )
    _fenced(a, 3, Snapshot(f"{p}/new", 1, {"n": 1}), rule)
    _fenced(b, 1, None, rule)


async def test_concurrent_fenced_writers(make_connector: MakeConnector, name_prefix: str) -> None:
    """Writers on separate instances, fence f with version 100 - f (a re-created record has a
    higher fence and a lower version): by the rules exactly one can apply, whatever the order.
    Where the fence check and the write are not one atomic operation, a writer passes the check
    and lands after a higher fence applied: two or more apply."""
    writers = [await make_connector() for _ in range(WRITERS)]
    rng = random.Random(11)
    for round_ in range(4):
        name = f"{name_prefix}/race{round_}"
        if round_ % 2:  # a name with a fence stored already, as well as a new one
            await writers[0].write([Put(name, 0, {"f": 0}, fence=0)])
        fences = list(range(1, WRITERS + 1))
        rng.shuffle(fences)

        async def put(writer: BoundedConnector, fence: int, name: str = name) -> WriteResult:
            [result] = await writer.write([Put(name, 100 - fence, {"f": fence}, fence=fence)])
            return result

        results = await asyncio.gather(*(put(w, f) for w, f in zip(writers, fences, strict=True)))
        rule = "rule: fenced: the fence check, version check and write are one atomic operation"
        applied = [r for r in results if r.outcome is Outcome.APPLIED]
        assert len(applied) == 1, f"{rule}: {len(applied)} of {WRITERS} writers applied"
        won = applied[0].op
        assert won.fence is not None
        winner = Snapshot(name, 100 - won.fence, {"f": won.fence})
        assert await writers[0].get(name) == winner, rule
        for result in results:
            mine = result.op.fence
            assert mine is not None
            if mine < won.fence:
                _fenced(result, won.fence, winner, rule)
            elif mine > won.fence:
                assert result.outcome is Outcome.CONFLICT and result.current == winner, rule
        # The winner's fence is what is kept.
        [result] = await writers[-1].write([Delete(name, 200, fence=won.fence - 1)])
        _fenced(result, won.fence, winner, rule)


async def test_concurrent_delete_and_recreate(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    """Stale deletes and puts race a re-create on other instances: the re-create survives."""
    names = [f"{name_prefix}/n{i}" for i in range(10)]
    setup = await make_connector()
    await setup.write([Put(n, 5, {"life": 1}, fence=5) for n in names])
    await setup.write([Delete(n, 5, fence=6) for n in names])
    stale = [await make_connector() for _ in range(4)]
    fresh = await make_connector()
    work = [fresh.write([Put(n, 1, {"life": 2}, fence=7) for n in names])]
    work += [w.write([Delete(n, 5, fence=6) for n in names]) for w in stale[:2]]
    work += [w.write([Put(n, 5, {"life": 1}, fence=5) for n in names]) for w in stale[2:]]
    results = await asyncio.gather(*work)
    rule = "rule: fenced: concurrent stale writes never undo a re-create with a higher fence"
    assert all(r.outcome is Outcome.APPLIED for r in results[0]), rule
    stored = await setup.get_many(names)
    assert {n: (s.version, s.data) for n, s in stored.items()} == {
        n: (1, {"life": 2}) for n in names
    }, rule
    for batch in results[1:3]:  # the deletes: before the re-create deleting nothing, or fenced
        for result in batch:
            assert result.outcome in (Outcome.APPLIED, Outcome.FENCED), rule
    for batch in results[3:]:  # the puts: the tombstone's fence 6 refuses them at any time
        for result in batch:
            assert result.outcome is Outcome.FENCED and result.fence in (6, 7), rule


async def test_idempotent_retry_with_a_lower_fence_refused(
    connector: Connector, name_prefix: str
) -> None:
    """A stalled writer's retry of exactly what is stored, after a later writer raised the
    fence: refused like any lower fence, not taken for an idempotent success."""
    name = f"{name_prefix}/again"
    await connector.write([Put(name, 2, {"a": [1]}, fence=5)])
    rule = "rule: fenced: a lower fence is refused, also for a retry of what is stored"
    stored = Snapshot(name, 2, {"a": [1]})
    _fenced((await connector.write([Put(name, 2, {"a": [1]}, fence=4)]))[0], 5, stored, rule)
    # Equal data in another key order: still the stored version's data, still refused.
    await connector.write([Put(name, 3, {"a": 1, "b": 2}, fence=6)])
    stored = Snapshot(name, 3, {"a": 1, "b": 2})
    _fenced((await connector.write([Put(name, 3, {"b": 2, "a": 1}, fence=5)]))[0], 6, stored, rule)
    assert await connector.get(name) == stored, rule


async def test_fences_on_records_written_unfenced(connector: Connector, name_prefix: str) -> None:
    """Records stored before a cluster wrote them (a single server writes unfenced) get the
    fence of the first fenced op applied to them: a put, a delete, an idempotent retry."""
    p = name_prefix
    put, deleted, retried = f"{p}/put", f"{p}/deleted", f"{p}/retried"
    await connector.write([Put(n, 1, {"n": n}) for n in (put, deleted, retried)])
    [a, b, c] = await connector.write(
        [
            Put(put, 2, {"v": 2}, fence=5),
            Delete(deleted, 1, fence=5),
            Put(retried, 1, {"n": retried}, fence=5),
        ]
    )
    for result in (a, b, c):
        _applied(result, "rule: fenced: a fenced op over an unfenced record applies")
    rule = "rule: fenced: a fenced put over a record without a fence stores its fence"
    _fenced(
        (await connector.write([Put(put, 3, {}, fence=4)]))[0], 5, Snapshot(put, 2, {"v": 2}), rule
    )
    rule = "rule: fenced: a fenced delete of a record without a fence leaves a tombstone"
    _fenced((await connector.write([Put(deleted, 9, {}, fence=4)]))[0], 5, None, rule)
    await _invisible(connector, deleted, p, f"{rule}; the tombstone is no record")
    rule = "rule: fenced: a fenced retry of a record without a fence stores its fence"
    stored = Snapshot(retried, 1, {"n": retried})
    _fenced((await connector.write([Put(retried, 2, {}, fence=4)]))[0], 5, stored, rule)


async def test_fences_are_per_name(connector: Connector, name_prefix: str) -> None:
    """Names that a collation, a key length limit or a prefix match would take for one get a
    fence each (a fence shared by two names refuses the other's writes)."""
    head = f"{name_prefix}/"
    room = 500 - len(head.encode())
    long = head + "ü" * (room // 2) + "x" * (room % 2)
    tails = ["x", "X", "x ", "x/", "x%", "x*", "\u00e9", "e\u0301", "\u00df", "ss"]
    names = [head + t for t in tails] + [long, long[:-1], long[:-1] + "y"]
    rule = "rule: fenced: each name has its own fence (distinct strings, never truncated)"
    # Falling fences: a fence shared by any two of them refuses the second.
    for i, name in enumerate(names):
        [result] = await connector.write([Put(name, 1, {"i": i}, fence=100 - i)])
        _applied(result, f"{rule}: {name!r}")
    for i, name in enumerate(names):
        [result] = await connector.write([Put(name, 2, {}, fence=99 - i)])
        _fenced(result, 100 - i, Snapshot(name, 1, {"i": i}), f"{rule}: {name!r}")
    # Tombstones too.
    results = await connector.write(
        [Delete(name, 1, fence=200 - i) for i, name in enumerate(names)]
    )
    assert all(r.ok for r in results), rule
    for i, name in enumerate(names):
        [result] = await connector.write([Put(name, 1, {}, fence=199 - i)])
        _fenced(result, 200 - i, None, f"{rule} (tombstone): {name!r}")


async def test_tombstones_skipped_across_scan_pages(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    """Tombstones filling whole pages and more: a scan that pages over stored items and drops
    tombstones afterwards yields short pages and must not take one for the last."""
    connector = await make_connector(page_size=3)
    p = name_prefix
    names = [f"{p}/{i:02d}" for i in range(20)]
    live = [names[0], names[9], names[10], names[19]]
    await connector.write([Put(n, 1, {"n": n}, fence=1) for n in names])
    await connector.write([Delete(n, 1, fence=2) for n in names if n not in live])
    rule = "rule: fenced: tombstones are invisible as records (scan, across pages of 3)"
    assert [s.name async for s in connector.scan(f"{p}/")] == live, rule
    assert [s.name async for s in connector.scan(f"{p}/0")] == [names[0], names[9]], rule
