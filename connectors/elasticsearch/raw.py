"""The raw reader: stored documents as a data team sees them, through searches on its own client.

It shares no logic with the connector: it finds a record by a ``term`` query on ``name`` (not by
document id) after refreshing the index, as a search by a data team after a refresh would.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.elasticsearch.client import ClientSettings
from connectors.elasticsearch.errors import guard

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = ["ElasticsearchRawReader"]


class ElasticsearchRawReader:
    def __init__(self, settings: ClientSettings, index: str, timeout: float) -> None:
        self._settings = settings
        self._index = index
        self._timeout = timeout
        self._client: AsyncElasticsearch | None = None

    async def _search(self, query: dict[str, Any], size: int) -> dict[str, Any]:
        if self._client is None:
            self._client = self._settings.create()
        async with guard("raw read", self._timeout):
            await self._client.indices.refresh(index=self._index)
            response = await self._client.search(
                index=self._index, query=query, size=size, track_total_hits=True
            )
        body: dict[str, Any] = response.body
        return body

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        hits = (await self._search({"term": {"name": name}}, 2))["hits"]["hits"]
        if not hits:
            return None
        assert len(hits) == 1, f"{len(hits)} documents hold record {name!r}"
        source = hits[0]["_source"]
        exact = json.loads(source["data_json"])
        return {
            "name": source["name"],
            "collection": source["collection"],
            "version": source["version"],
            # The native document when the record is searchable; its exact text otherwise.
            "data": source["data"] if source["searchable"] else exact,
            "data_json": exact,
            "searchable": source["searchable"],
            "updated_at": datetime.fromisoformat(source["updated_at"]),
            "_id": hits[0]["_id"],
        }

    async def count_raw(self, prefix: str = "") -> int:
        # Live records only: tombstones have no name (connectors/elasticsearch/layout.py).
        query = {"prefix": {"name": prefix}} if prefix else {"exists": {"field": "name"}}
        total = (await self._search(query, 0))["hits"]["total"]
        return int(total["value"])

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
