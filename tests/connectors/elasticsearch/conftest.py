"""Fixtures for the Elasticsearch connector's own tests, against the Elasticsearch **stand-in**
(osmem-server behind the header proxy; see ``tests/standins/elasticsearch.py``) or the cluster
named by ``RECORDGATE_ELASTICSEARCH_URL``. Each test gets an index of its own, deleted after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

from connectors.elasticsearch import ElasticsearchConnector
from tests.standins.elasticsearch import require_elasticsearch

MakeConnector = Callable[..., Awaitable[ElasticsearchConnector]]


@pytest.fixture(scope="session")
def es_url() -> str:
    return require_elasticsearch()


@pytest.fixture
def index_name() -> str:
    return f"rg_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def es(es_url: str, index_name: str) -> AsyncIterator[AsyncElasticsearch]:
    """A plain client of the same cluster (the test's own view); deletes the test's index."""
    client = AsyncElasticsearch(es_url, request_timeout=10)
    yield client
    await client.options(ignore_status=404).indices.delete(index=index_name)
    await client.close()


@pytest.fixture
async def make_connector(
    es_url: str, index_name: str, es: AsyncElasticsearch
) -> AsyncIterator[MakeConnector]:
    """``await make_connector(**options)``: an opened connector on the test's index."""
    made: list[ElasticsearchConnector] = []

    async def make(url: str | None = None, **options: Any) -> ElasticsearchConnector:
        options.setdefault("index", index_name)
        options.setdefault("timeout", 5)
        connector = ElasticsearchConnector(url or es_url, **options)
        made.append(connector)
        await connector.open()
        return connector

    yield make
    for connector in made:
        await connector.close()


@pytest.fixture
async def connector(make_connector: MakeConnector) -> ElasticsearchConnector:
    return await make_connector()
