"""Fenced writes of the RethinkDB connector against reqlite 2.3.0 (a stand-in, not RethinkDB),
where the conformance suite cannot look: the documents and tombstones data teams see, their
queries skipping tombstones, an idempotent retry whose data differs in key order (one more
round, the fence raised by the same atomic replace), the settling of change entries, and the
stand-in gap that keeps ``name`` on tombstones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import Delete, Outcome, Put, Snapshot, StorageRejected
from connectors.rethinkdb import RethinkDBConnector
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.layout import document_fields, record_id, version_key
from connectors.rethinkdb.writes import Rematch, _settle
from tests.connectors.rethinkdb_queries import recorded_queries
from tests.standins.rethinkdb import reqlite_url

pytestmark = pytest.mark.needs_server("rethinkdb")

TOP = 2**63 - 1


@pytest.fixture
async def store() -> AsyncIterator[RethinkDBConnector]:
    import uuid

    connector = RethinkDBConnector(reqlite_url(), table=f"f_{uuid.uuid4().hex[:12]}", timeout=5)
    await connector.open()
    yield connector
    await connector.drop()
    await connector.close()


async def _run(store: RethinkDBConnector, query: Any) -> Any:
    """A query on a connection of its own, as a data team would run it."""
    conn = await reql().connect(host="127.0.0.1", port=store.address.port)
    try:
        result = await query.run(conn)
        if hasattr(result, "__aiter__"):
            result = [item async for item in result]
        return result
    finally:
        await conn.close(noreply_wait=False)


async def _doc(store: RethinkDBConnector, name: str) -> dict[str, Any] | None:
    """The stored document of ``name``, tombstone or record, by primary key."""
    result: dict[str, Any] | None = await _run(store, store.table.get(record_id(name)))
    return result


async def test_fence_and_tombstone_documents(store: RethinkDBConnector) -> None:
    [put] = await store.write([Put("user/1", 3, {"age": 40}, fence=TOP - 1)])
    assert put.ok
    doc = await _doc(store, "user/1")
    assert doc is not None and doc["fence_key"] == "09223372036854775806"
    assert doc["version_key"] == version_key(3) and doc["collection"] == "user"
    # A fenced delete replaces the record with a tombstone: name and fence, nothing else.
    [deleted] = await store.write([Delete("user/1", 3, fence=TOP)])
    assert deleted.ok
    assert await _doc(store, "user/1") == {
        "id": record_id("user/1"),
        "name": "user/1",
        "tombstone": True,
        "fence_key": "09223372036854775807",
    }
    # Deleting a name never stored leaves one too (on the stand-in: by an insert).
    [never] = await store.write([Delete("user/never", 0, fence=5)])
    assert never.ok
    assert await _doc(store, "user/never") == {
        "id": record_id("user/never"),
        "name": "user/never",
        "tombstone": True,
        "fence_key": "00000000000000000005",
    }
    # An unfenced delete keeps a record's fence as a tombstone, and removes a record without one.
    await store.write([Put("user/f", 1, {}, fence=9), Put("user/plain", 1, {})])
    await store.write([Delete("user/f", 1), Delete("user/plain", 1)])
    tomb = await _doc(store, "user/f")
    assert tomb is not None and tomb["tombstone"] is True and tomb["fence_key"].endswith("09")
    assert await _doc(store, "user/plain") is None
    [stale] = await store.write([Put("user/f", 2, {}, fence=8)])
    assert stale.outcome is Outcome.FENCED and stale.fence == 9 and stale.current is None


async def test_data_team_queries_see_records_only(store: RethinkDBConnector) -> None:
    await store.write([
        Put("user/alice", 1, {"age": 31}, fence=1),
        Put("user/old", 1, {"age": 70}, fence=1),
        Put("pet/rex", 1, {"age": 99}),
    ])  # fmt: skip
    await store.write([Delete("user/old", 1, fence=2), Delete("user/gone", 0, fence=2)])
    # The README's query: by the collection index, which no tombstone is in.
    older = await _run(
        store,
        store.table.get_all("user", index="collection")
        .filter(lambda doc: doc["data"]["age"] > 30)
        .order_by("name")
        .pluck("name"),
    )
    assert [doc["name"] for doc in older] == ["user/alice"]
    # The documented filter for records only (docs/connectors.md), and the tombstones.
    live = await _run(
        store, store.table.filter(lambda doc: doc.has_fields("tombstone").not_()).order_by("name")
    )
    assert [doc["name"] for doc in live] == ["pet/rex", "user/alice"]
    tombstones = await _run(
        store, store.table.filter(lambda doc: doc.has_fields("tombstone")).order_by("name")
    )
    assert [doc["name"] for doc in tombstones] == ["user/gone", "user/old"]
    by_name = await _run(store, store.table.between("user/", "user0", index="name").count())
    assert by_name == 3  # the name index holds tombstones: scans by it filter them out
    assert [s.name async for s in store.scan("user/")] == ["user/alice"]


async def test_an_idempotent_retry_in_other_key_order_raises_only_the_fence(
    store: RethinkDBConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = recorded_queries(monkeypatch)
    await store.write([Put("r", 4, {"a": 1, "b": 2}, fence=3)])
    before = await _doc(store, "r")
    # The same text: raised by the first conditional write.
    queries.clear()
    [same] = await store.write([Put("r", 4, {"a": 1, "b": 2}, fence=6)])
    assert same.outcome is Outcome.APPLIED and len(queries) == 1
    # Other key order: equal data, other text; the next round compares the stored text.
    queries.clear()
    [retry] = await store.write([Put("r", 4, {"b": 2, "a": 1}, fence=9)])
    assert retry.outcome is Outcome.APPLIED and len(queries) == 2
    after = await _doc(store, "r")
    assert before is not None and after is not None
    assert after == {**before, "fence_key": "00000000000000000009"}  # same text, same time
    [lower] = await store.write([Put("r", 5, {}, fence=8)])
    assert lower.outcome is Outcome.FENCED and lower.fence == 9
    assert lower.current == Snapshot("r", 4, {"a": 1, "b": 2})


@pytest.mark.parametrize("fence", [-1, 2**63, True, 1.0, "7"])
async def test_fences_outside_the_range_are_rejected_before_writing(
    store: RethinkDBConnector, fence: Any
) -> None:
    for bad in (Put("bad", 1, {}, fence=fence), Delete("bad", 1, fence=fence)):
        with pytest.raises(StorageRejected, match="fence"):
            await store.write([Put("ok", 1, {}), bad])
        assert await _run(store, store.table.count()) == 0


NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _record(name: str, version: int, data: Any, fence: int | None) -> dict[str, Any]:
    text = json.dumps(data, separators=(",", ":"))
    doc: dict[str, Any] = json.loads(document_fields(name, version, text, fence))
    return doc


def _tomb(name: str, fence: int) -> dict[str, Any]:
    return {
        "id": record_id(name),
        "name": name,
        "tombstone": True,
        "fence_key": str(fence).zfill(20),
    }


@pytest.mark.parametrize(
    ("op", "after", "expected"),
    [
        (Put("x", 3, {"a": 1}, fence=5), _record("x", 2, {}, 6), (Outcome.FENCED, 6, True)),
        (Put("x", 3, {"a": 1}, fence=5), _tomb("x", 6), (Outcome.FENCED, 6, False)),
        (Delete("x", 3, fence=5), _tomb("x", 9), (Outcome.FENCED, 9, False)),
        (Delete("x", 3, fence=5), _record("x", 9, {}, 9), (Outcome.FENCED, 9, True)),
        (Delete("x", 3, fence=5), _record("x", 9, {}, 5), (Outcome.CONFLICT, None, True)),
        (Delete("x", 3, fence=5), _tomb("x", 5), Outcome.APPLIED),
        (Delete("x", 3, fence=5), None, "again"),  # no tombstone left: not done
        (Delete("x", 3), None, Outcome.APPLIED),
        (Delete("x", 3), _tomb("x", 7), Outcome.APPLIED),  # a tombstone is no record
        (Put("x", 3, {"a": 1}, fence=5), _record("x", 3, {"a": 1}, 5), Outcome.APPLIED),
        (Put("x", 3, {"a": 1, "b": 2}, fence=5), _record("x", 3, {"b": 2, "a": 1}, 2), "rematch"),
        (Put("x", 3, {"a": 1}, fence=5), _record("x", 3, {"a": 1.0}, 2),
         (Outcome.CONFLICT, None, True)),
        (Put("x", 3, {"a": 1}, fence=5), _tomb("x", 5), "again"),  # raced by a delete
        (Put("x", 3, {"a": 1}), _tomb("x", 6), "again"),
        (Put("x", 3, {"a": 1}), _record("x", 4, {}, 9), (Outcome.CONFLICT, None, True)),
        (Put("x", 3, {"a": 1}), _record("x", 3, {"a": 1}, 9), Outcome.APPLIED),
    ],
)  # fmt: skip
def test_settling_fenced_entries(op: Put | Delete, after: Any, expected: Any) -> None:
    """An op's result from what its own atomic write left (``new_val``)."""
    texts = {} if isinstance(op, Delete) else {"x": json.dumps(op.data, separators=(",", ":"))}
    result = _settle(op, {"old_val": after, "new_val": after}, texts)
    if expected == "again":
        assert result is None
    elif expected == "rematch":
        assert isinstance(result, Rematch) and result.text == after["data_json"]
    elif isinstance(expected, Outcome):
        assert not isinstance(result, Rematch) and result is not None
        assert result.outcome is expected and result.fence is None
    else:
        outcome, fence, has_current = expected
        assert not isinstance(result, Rematch) and result is not None
        assert result.outcome is outcome and result.fence == fence
        assert (result.current is not None) == has_current


async def test_standin_gap_met_by_fencing(store: RethinkDBConnector) -> None:
    """Why tombstones keep ``name``: the stand-in's ``between`` on an index breaks the connection
    at a document without the indexed field (RethinkDB leaves such a document out of the
    index). If this fails, the stand-in changed: docs/connectors.md lists the gap."""
    from rethinkdb.errors import ReqlDriverError

    await _run(store, store.table.insert({"id": "no-name", "tombstone": True}))
    with pytest.raises(ReqlDriverError):
        await _run(store, store.table.between("a", "z", index="name").count())
