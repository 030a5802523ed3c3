"""Fencing in the Elasticsearch connector, where the conformance suite cannot look: the fence
field and the tombstone documents of the stored layout, what a data team's searches see, fences
beyond 2^53, an index made before fencing, and a writer that stalls between its read and its
write (the compare-and-set must refuse it). The rules themselves: ``conformance/test_fencing.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from connectors.base import Delete, Outcome, Put, Snapshot
from connectors.elasticsearch import ElasticsearchConnector
from connectors.elasticsearch.layout import LIVE_RECORDS
from tests.connectors.elasticsearch.conftest import MakeConnector


async def _doc(es: AsyncElasticsearch, index: str, doc_id: str) -> dict[str, Any] | None:
    response = await es.options(ignore_status=404).get(index=index, id=doc_id)
    return response.body["_source"] if response.body.get("found") else None


async def _ids(es: AsyncElasticsearch, index: str, query: dict[str, Any]) -> list[str]:
    await es.indices.refresh(index=index)
    response = await es.search(index=index, query=query, size=100, sort=[{"_id": "asc"}])
    return [hit["_id"] for hit in response.body["hits"]["hits"]]


async def test_fence_field_and_tombstone_documents(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    assert (await connector.write([Put("user/42", 3, {"age": 36}, fence=7)]))[0].ok
    live = await _doc(es, index_name, "user/42")
    assert live is not None and live["fence"] == 7 and live["version"] == 3
    assert (await connector.write([Put("plain", 1, {})]))[0].ok
    assert "fence" not in (await _doc(es, index_name, "plain") or {}), "only fenced names"
    # A fenced delete replaces the document with a tombstone; over nothing it makes one.
    [gone, never] = await connector.write(
        [Delete("user/42", 3, fence=9), Delete("user/7", 1, fence=4)]
    )
    assert gone.ok and never.ok
    for doc_id, fence in (("user/42", 9), ("user/7", 4)):
        tombstone = await _doc(es, index_name, doc_id)
        assert tombstone is not None
        assert set(tombstone) == {"tombstone", "fence", "updated_at"}
        assert (tombstone["tombstone"], tombstone["fence"]) == (doc_id, fence)
    # Invisible as records to every read.
    assert await connector.get("user/42") is None
    assert await connector.get_many(["user/42", "user/7", "plain"]) == {
        "plain": Snapshot("plain", 1, {})
    }
    assert await connector.head("user/7") is None
    assert [s.name async for s in connector.scan()] == ["plain"]
    assert [s.name async for s in connector.scan("user")] == []
    reader = connector.raw_reader()
    try:
        assert await reader.read_raw("user/42") is None
        assert await reader.count_raw() == 1 and await reader.count_raw("user") == 0
    finally:
        await reader.close()
    # The data team's searches: any condition on name, collection or data skips tombstones,
    # and LIVE_RECORDS (the documented clause) keeps match_all to live records.
    assert await _ids(es, index_name, {"match_all": {}}) == ["plain", "user/42", "user/7"]
    assert await _ids(es, index_name, LIVE_RECORDS) == ["plain"]
    assert await _ids(es, index_name, {"term": {"collection": "user"}}) == []
    assert await _ids(es, index_name, {"exists": {"field": "tombstone"}}) == ["user/42", "user/7"]
    # Unfenced ops carry the fence on: a re-create keeps it, an unfenced delete leaves the
    # tombstone, a plain record is plainly deleted.
    assert (await connector.write([Put("user/42", 1, {"back": True})]))[0].ok
    assert (await _doc(es, index_name, "user/42") or {}).get("fence") == 9
    assert (await connector.write([Delete("user/42", 1), Delete("plain", 1)]))[0].ok
    assert (await _doc(es, index_name, "user/42") or {}).get("tombstone") == "user/42"
    assert await _doc(es, index_name, "plain") is None
    [stale] = await connector.write([Put("user/42", 9, {}, fence=8)])
    assert (stale.outcome, stale.fence, stale.current) == (Outcome.FENCED, 9, None)


async def test_fences_beyond_2_53_stay_exact(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    big = 2**53  # 2^53 + 1 is no double: a fence read as one would compare equal to 2^53
    assert (await connector.write([Put("f", 1, {}, fence=big + 1)]))[0].ok
    [refused] = await connector.write([Put("f", 2, {}, fence=big)])
    assert (refused.outcome, refused.fence) == (Outcome.FENCED, big + 1)
    assert refused.current == Snapshot("f", 1, {})
    top = 2**63 - 1
    assert (await connector.write([Delete("f", 1, fence=top)]))[0].ok
    assert (await _doc(es, index_name, "f") or {}).get("fence") == top
    [refused] = await connector.write([Put("f", 5, {}, fence=top - 1)])
    assert (refused.outcome, refused.fence, refused.current) == (Outcome.FENCED, top, None)
    assert (await connector.write([Put("f", 5, {}, fence=top)]))[0].ok


async def test_a_fenced_retry_raises_only_the_fence(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    assert (await connector.write([Put("r", 4, {"a": 1, "b": [1, 2]}, fence=5)]))[0].ok
    before = await _doc(es, index_name, "r")
    await asyncio.sleep(0.01)  # a rewritten document would get a later updated_at
    [retry] = await connector.write([Put("r", 4, {"b": [1, 2], "a": 1}, fence=9)])
    assert retry.outcome is Outcome.APPLIED
    after = await _doc(es, index_name, "r")
    assert before is not None and after == {**before, "fence": 9}
    [stale] = await connector.write([Put("r", 5, {"a": 2}, fence=8)])
    assert (stale.outcome, stale.fence) == (Outcome.FENCED, 9)


async def test_an_index_made_before_fencing_gets_the_fields(
    make_connector: MakeConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    from connectors.elasticsearch.layout import FENCE_FIELDS, index_body

    body = index_body(fields_limit=1000, shards=None, replicas=None)
    for field in FENCE_FIELDS:
        del body["mappings"]["properties"][field]
    await es.indices.create(index=index_name, **body)
    await es.index(
        index=index_name,
        id="old/1",
        document={"name": "old/1", "collection": "old", "version": 2, "data_json": "{}"},
        refresh=True,
    )
    connector = await make_connector()
    properties = (await es.indices.get_mapping(index=index_name))[index_name]["mappings"][
        "properties"
    ]
    assert {f: properties[f]["type"] for f in FENCE_FIELDS} == {
        "fence": "long",
        "tombstone": "keyword",
    }
    assert (await connector.write([Delete("old/1", 2, fence=3)]))[0].ok
    assert (await connector.write([Put("old/1", 1, {}, fence=2)]))[0].outcome is Outcome.FENCED


async def test_an_index_with_a_fence_of_another_type_is_refused(
    es_url: str, es: AsyncElasticsearch, index_name: str
) -> None:
    from connectors.elasticsearch.layout import index_body
    from gateway.exceptions import StorageRejected

    body = index_body(fields_limit=1000, shards=None, replicas=None)
    body["mappings"]["properties"]["fence"] = {"type": "keyword"}  # compared as text: 10 < 9
    await es.indices.create(index=index_name, **body)
    connector = ElasticsearchConnector(es_url, index=index_name)
    with pytest.raises(StorageRejected, match="another layout"):
        await connector.open()
    await connector.close()


@pytest.mark.parametrize("stale_op", ["put", "delete"])
async def test_a_writer_stalled_between_read_and_write_is_fenced(
    make_connector: MakeConnector, stale_op: str
) -> None:
    """Rule 4: node A reads the state (fence 5), stalls before its bulk; node B meanwhile
    stores fence 6, deletes with 7 and re-creates from version 1 with 8. A's write then lands
    on a document that changed since A read it: it must be refused (FENCED), not applied over
    B's re-created record by the version rule."""
    stalled, node_b = await make_connector(), await make_connector()
    assert (await node_b.write([Put("rec", 4, {"by": "a"}, fence=5)]))[0].ok
    read_done, go_on = asyncio.Event(), asyncio.Event()
    bulk = stalled._bulk  # type: ignore[attr-defined]
    stalls = 0

    async def stalling_bulk(client: Any, body: str) -> list[dict[str, Any]]:
        nonlocal stalls
        stalls += 1
        if stalls == 1:  # the first bulk only: after its read, before its write
            read_done.set()
            await go_on.wait()
        return await bulk(client, body)

    stalled._bulk = stalling_bulk  # type: ignore[attr-defined]
    op = (
        Put("rec", 5, {"by": "a, late"}, fence=5)
        if stale_op == "put"
        else Delete("rec", 4, fence=5)
    )
    late = asyncio.create_task(stalled.write([op]))
    await asyncio.wait_for(read_done.wait(), 10)
    assert (await node_b.write([Put("rec", 6, {"by": "b"}, fence=6)]))[0].ok
    assert (await node_b.write([Delete("rec", 6, fence=7)]))[0].ok
    assert (await node_b.write([Put("rec", 1, {"by": "b, again"}, fence=8)]))[0].ok
    go_on.set()
    [result] = await asyncio.wait_for(late, 10)
    assert stalls == 1, "refused on the re-read, not written by a second bulk"
    assert (result.outcome, result.fence) == (Outcome.FENCED, 8)
    assert result.current == Snapshot("rec", 1, {"by": "b, again"})
    assert await node_b.get("rec") == Snapshot("rec", 1, {"by": "b, again"})
