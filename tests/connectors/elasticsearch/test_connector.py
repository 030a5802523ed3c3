"""The Elasticsearch connector against the Elasticsearch stand-in (osmem-server behind the header
proxy, see ``tests/standins/``): layout and mapping, type clashes, data that cannot be mapped,
ids of long names, recreating deleted records, concurrent opens, existing indexes, durability
settings, and the data-team query of the README."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch, ConflictError

from connectors.base import Delete, Outcome, Put, Snapshot, StorageRejected
from connectors.elasticsearch import DATA_TEAM_QUERY, ElasticsearchConnector
from connectors.elasticsearch.layout import MAX_VERSION
from tests.connectors.elasticsearch.conftest import MakeConnector

pytestmark = pytest.mark.needs_server("elasticsearch")


async def _source(es: AsyncElasticsearch, index: str, name: str) -> dict[str, Any]:
    """The stored document of ``name``, found by a search on the name as a data team would."""
    await es.indices.refresh(index=index)
    hits = (await es.search(index=index, query={"term": {"name": name}}))["hits"]["hits"]
    assert len(hits) == 1, hits
    hit: dict[str, Any] = hits[0]
    return hit


async def test_open_creates_the_explicit_mapping(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    mapping = (await es.indices.get_mapping(index=index_name))[index_name]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["date_detection"] is False
    types = {field: spec.get("type") for field, spec in mapping["properties"].items()}
    assert types == {
        "name": "keyword",
        "collection": "keyword",
        "version": "long",
        "updated_at": "date",
        "data_json": "keyword",
        "searchable": "boolean",
        "data": "object",
        "fence": "long",
        "tombstone": "keyword",
    }
    assert mapping["properties"]["data_json"]["index"] is False
    settings = (await es.indices.get_settings(index=index_name, flat_settings=True))[index_name]
    assert settings["settings"]["index.mapping.ignore_malformed"] == "true"
    assert settings["settings"]["index.mapping.total_fields.limit"] == "1000"


async def test_stored_document(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    await connector.write([Put("user/42", 7, {"age": 31, "tags": ["x"]})])
    hit = await _source(es, index_name, "user/42")
    assert hit["_id"] == "user/42"  # readable ids for ordinary names
    source = hit["_source"]
    assert {k: v for k, v in source.items() if k != "updated_at"} == {
        "name": "user/42",
        "collection": "user",
        "version": 7,
        "data_json": '{"age":31,"tags":["x"]}',
        "searchable": True,
        "data": {"age": 31, "tags": ["x"]},
    }
    assert source["updated_at"].endswith("+00:00")


async def test_type_clash_between_records_keeps_both_exact(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    # The first record maps data.age as a number; a dynamic mapping alone would refuse the
    # second. ignore_malformed keeps it searchable except for that field.
    await connector.write([Put("user/a", 1, {"age": 30, "city": "Lyon"})])
    await connector.write([Put("user/b", 1, {"age": "old", "city": "Oslo"})])
    assert await connector.get("user/a") == Snapshot("user/a", 1, {"age": 30, "city": "Lyon"})
    assert await connector.get("user/b") == Snapshot("user/b", 1, {"age": "old", "city": "Oslo"})
    b = await _source(es, index_name, "user/b")
    assert b["_source"]["searchable"] is True
    assert "data.age" in b.get("_ignored", [])
    await es.indices.refresh(index=index_name)
    older = await es.search(index=index_name, query={"range": {"data.age": {"gte": 18}}})
    assert [hit["_source"]["name"] for hit in older["hits"]["hits"]] == ["user/a"]
    in_oslo = await es.search(index=index_name, query={"term": {"data.city": "Oslo"}})
    assert [hit["_source"]["name"] for hit in in_oslo["hits"]["hits"]] == ["user/b"]


@pytest.mark.parametrize(
    "data",
    [
        {"": "empty key"},
        {"a": {"": 1}},
        [1, "two", {"x": []}],  # a top-level array of mixed values
        json.loads('{"a":' * 30 + "1" + "}" * 30),  # over index.mapping.depth.limit (20)
    ],
    ids=["empty key", "nested empty key", "mixed array", "deep"],
)
async def test_unmappable_data_is_stored_exactly_but_not_searchable(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str, data: Any
) -> None:
    [result] = await connector.write([Put("odd/1", 1, data)])
    assert result.ok
    assert await connector.get("odd/1") == Snapshot("odd/1", 1, data)
    source = (await _source(es, index_name, "odd/1"))["_source"]
    assert source["searchable"] is False and "data" not in source
    assert json.loads(source["data_json"]) == data
    # A later version that maps is searchable again.
    await connector.write([Put("odd/1", 2, {"fine": True})])
    source = (await _source(es, index_name, "odd/1"))["_source"]
    assert source["searchable"] is True and source["data"] == {"fine": True}


async def test_object_where_another_record_has_a_number(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    await connector.write([Put("c/1", 1, {"age": 30})])
    [result] = await connector.write([Put("c/2", 1, {"age": {"years": 30}})])
    assert result.ok
    assert await connector.get("c/2") == Snapshot("c/2", 1, {"age": {"years": 30}})


async def test_mapping_explosion_is_bounded(
    make_connector: MakeConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    connector = await make_connector(fields_limit=30)
    wide = {f"field{i}": i for i in range(100)}
    batch = [Put("w/narrow", 1, {"a": 1}), Put("w/wide", 1, wide), Put("w/b", 1, {"b": 2})]
    results = await connector.write(batch)
    assert all(result.ok for result in results)
    assert (await connector.get("w/wide")) == Snapshot("w/wide", 1, wide)
    assert (await _source(es, index_name, "w/wide"))["_source"]["searchable"] is False
    assert (await _source(es, index_name, "w/b"))["_source"]["searchable"] is True
    fields = (await es.indices.get_mapping(index=index_name))[index_name]["mappings"]
    assert len(fields["properties"]["data"]["properties"]) < 30


async def test_recreated_at_a_lower_version_straight_after_delete(
    connector: ElasticsearchConnector,
) -> None:
    # Versions start over after a delete. Elasticsearch keeps a delete's tombstone (with
    # external versioning, its version) for index.gc_deletes, 60 s: the connector must not
    # depend on it.
    name = "phoenix/1"
    for life in range(3):
        await connector.write([Put(name, 5, {"life": life, "v": 5})])
        [deleted] = await connector.write([Delete(name, 5)])
        assert deleted.ok and await connector.get(name) is None
        [created] = await connector.write([Put(name, 0, {"life": life, "v": 0})])
        assert created.ok
        assert await connector.get(name) == Snapshot(name, 0, {"life": life, "v": 0})
        [stale] = await connector.write([Put(name, 0, {"other": True})])
        assert stale.outcome is Outcome.CONFLICT
        [gone] = await connector.write([Delete(name, 0)])
        assert gone.ok


async def test_external_versioning_would_refuse_a_recreate(
    es: AsyncElasticsearch, index_name: str
) -> None:
    # Why the connector does not use version_type=external: the delete's tombstone keeps its
    # version (index.gc_deletes, 60 s), so the record cannot come back at a lower version.
    await es.index(index=index_name, id="r", document={}, version=5, version_type="external")
    await es.delete(index=index_name, id="r", version=6, version_type="external")
    with pytest.raises(ConflictError):
        await es.index(index=index_name, id="r", document={}, version=1, version_type="external")


async def test_concurrent_recreates_after_delete_have_one_winner(
    make_connector: MakeConnector,
) -> None:
    name = "phoenix/race"
    first = await make_connector()
    await first.write([Put(name, 9, {"v": 9})])
    await first.write([Delete(name, 9)])
    writers = [await make_connector() for _ in range(8)]
    results = await asyncio.gather(
        *(w.write([Put(name, 1, {"writer": i})]) for i, w in enumerate(writers))
    )
    winners = [r for [r] in results if r.ok]
    assert len(winners) == 1
    winner = winners[0].op
    assert isinstance(winner, Put)
    assert await first.get(name) == Snapshot(name, 1, winner.data)


async def test_long_names_and_tilde_names_get_hashed_ids(
    connector: ElasticsearchConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    long = "long/" + "ü" * 600  # 1205 bytes: over Elasticsearch's 512-byte id limit
    exact = "x/" + "a" * 510  # 512 bytes: still its own id
    tilde = "~" + hashlib.sha256(long.encode()).hexdigest()  # looks like a hashed id
    names = [long, exact, tilde, "~"]
    await connector.write([Put(n, 1, {"n": n}) for n in names])
    assert await connector.get_many(names) == {n: Snapshot(n, 1, {"n": n}) for n in names}
    assert (await _source(es, index_name, exact))["_id"] == exact
    for name in (long, tilde, "~"):
        hashed = "~" + hashlib.sha256(name.encode()).hexdigest()
        assert (await _source(es, index_name, name))["_id"] == hashed
    assert [s.name async for s in connector.scan("")] == sorted(names)


async def test_largest_version(connector: ElasticsearchConnector) -> None:
    await connector.write([Put("v/max", MAX_VERSION, {"max": True})])
    assert await connector.head("v/max") == MAX_VERSION
    with pytest.raises(StorageRejected, match="outside"):
        await connector.write([Put("v/over", MAX_VERSION + 1, {})])


async def test_lone_surrogate_is_rejected_before_writing(
    connector: ElasticsearchConnector,
) -> None:
    with pytest.raises(StorageRejected):
        await connector.write([Put("ok/1", 1, {}), Put("bad/\udc80", 1, {})])
    with pytest.raises(StorageRejected):
        await connector.write([Put("ok/1", 1, {}), Put("bad/2", 1, {"s": "\ud800"})])
    assert await connector.get("ok/1") is None


async def test_get_many_over_several_requests(connector: ElasticsearchConnector) -> None:
    names = [f"many/{i:04d}" for i in range(2345)]
    await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names)])
    found = await connector.get_many([*names, "many/missing", names[0]])
    assert len(found) == len(names) and found[names[-1]] == Snapshot(names[-1], 1, {"i": 2344})


@pytest.mark.parametrize("page_size", [1, 3, 4])
async def test_scan_page_boundaries(make_connector: MakeConnector, page_size: int) -> None:
    connector = await make_connector(page_size=page_size)
    names = ["p/a", "p/b", "p/c", "p/d", "q/a", "o/z"]
    await connector.write([Put(n, 1, {}) for n in names])
    assert [s.name async for s in connector.scan("p/")] == ["p/a", "p/b", "p/c", "p/d"]
    assert [s.name async for s in connector.scan("")] == sorted(names)


async def test_one_instance_takes_concurrent_calls(connector: ElasticsearchConnector) -> None:
    names = [f"conc/{i}" for i in range(50)]
    await asyncio.gather(*(connector.write([Put(n, 1, {"n": n})]) for n in names))
    heads = await asyncio.gather(*(connector.head(n) for n in names))
    assert heads == [1] * len(names)


async def test_refresh_wait_for_makes_writes_searchable_at_once(
    make_connector: MakeConnector, es: AsyncElasticsearch, index_name: str
) -> None:
    connector = await make_connector(refresh="wait_for")
    await connector.write([Put("r/1", 1, {"x": 1})])
    hits = await es.search(index=index_name, query={"term": {"name": "r/1"}})
    assert len(hits["hits"]["hits"]) == 1


async def test_concurrent_opens_create_the_index_once(make_connector: MakeConnector) -> None:
    connectors = await asyncio.gather(*(make_connector() for _ in range(6)))
    await connectors[0].write([Put("o/1", 1, {})])
    assert [await c.head("o/1") for c in connectors] == [1] * 6


async def test_existing_index_keeps_its_documents(make_connector: MakeConnector) -> None:
    first = await make_connector()
    await first.write([Put("keep/1", 3, {"kept": True})])
    second = await make_connector()
    assert await second.get("keep/1") == Snapshot("keep/1", 3, {"kept": True})


async def test_index_with_another_layout_is_refused(
    es_url: str, es: AsyncElasticsearch, index_name: str
) -> None:
    await es.indices.create(index=index_name, mappings={"properties": {"name": {"type": "text"}}})
    connector = ElasticsearchConnector(es_url, index=index_name)
    with pytest.raises(StorageRejected, match="another layout"):
        await connector.open()
    await connector.close()


async def test_async_translog_is_refused_unless_accepted(
    es_url: str, es: AsyncElasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    connector = ElasticsearchConnector(es_url, index=index_name)
    await connector.open()  # creates the index
    await connector.close()
    await es.indices.put_settings(index=index_name, settings={"index.translog.durability": "async"})
    with pytest.raises(StorageRejected, match="allow_async_translog"):
        await ElasticsearchConnector(es_url, index=index_name).open()
    accepting = ElasticsearchConnector(es_url, index=index_name, allow_async_translog="true")
    await accepting.open()
    await accepting.close()
    assert "translog.durability: async" in caplog.text


@pytest.fixture
def data_team_index(index_name: str) -> str:
    """``recordgate``, the index the README's query names, on the stand-in (a server of this
    test run alone); on a genuine cluster (``RECORDGATE_ELASTICSEARCH_URL``) the test's own
    index, so no existing ``recordgate`` index is touched."""
    from tests.standins import elasticsearch as standin

    return "recordgate" if standin._shared is not None else index_name


async def test_data_team_query(
    make_connector: MakeConnector, es: AsyncElasticsearch, data_team_index: str
) -> None:
    """The README's query, run verbatim: request line and body as printed there."""
    connector = await make_connector(index=data_team_index)
    try:
        await connector.write(
            [
                Put("user/alice", 1, {"age": 31, "city": "Lyon"}),
                Put("user/bob", 1, {"age": 25}),
                Put("user/carol", 2, {"age": 47, "tags": ["admin"]}),
                Put("user/dave", 1, {"age": 30}),
                Put("user/erin", 1, {"age": "unknown"}),  # a type clash: stored, not matched
                Put("pet/rex", 1, {"age": 99}),  # another collection
                Put("user/frank", 1, {"age": 60}, fence=1),
            ]
        )
        # Deleted with a fence: a tombstone document, which the query must not match.
        assert (await connector.write([Delete("user/frank", 1, fence=2)]))[0].ok
        readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
        assert f"```console\n{DATA_TEAM_QUERY}\n```" in readme
        request_line, _, body = DATA_TEAM_QUERY.partition("\n")
        method, path = request_line.split(" ")
        assert (method, path) == ("GET", "recordgate/_search")
        path = path.replace("recordgate", data_team_index, 1)
        await es.indices.refresh(index=data_team_index)  # searches see writes once refreshed
        response = await es.perform_request(
            method,
            f"/{path}",
            body=json.loads(body),
            headers={"content-type": "application/json", "accept": "application/json"},
        )
    finally:
        await connector.drop()
    hits = response.body["hits"]["hits"]
    assert [hit["_source"] for hit in hits] == [
        {"name": "user/alice", "data": {"age": 31}},
        {"name": "user/carol", "data": {"age": 47}},
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("index", "Records", "lowercase"),
        ("index", "a/b", "must not contain"),
        ("index", "_x", "must not start"),
        ("index", "x" * 256, "255 bytes"),
        ("refresh", "sometimes", "refresh"),
        ("timeout", "soon", "timeout"),
        ("page_size", "0", "page_size"),
        ("verify_certs", "maybe", "verify_certs"),
    ],
)
def test_bad_options_are_config_errors(option: str, value: str, message: str) -> None:
    from connectors import create_connector
    from gateway.exceptions import ConfigError

    with pytest.raises(ConfigError, match=message):
        create_connector("elasticsearch", "http://127.0.0.1:9200", **{option: value})


@pytest.mark.parametrize(
    "url", ["", "127.0.0.1:9200", "ftp://host:21", "http://a:1,,http://b:2", "http://no-port"]
)
def test_bad_urls_are_config_errors(url: str) -> None:
    from connectors import create_connector
    from gateway.exceptions import ConfigError

    with pytest.raises(ConfigError):
        create_connector("elasticsearch", url)
