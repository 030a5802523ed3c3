"""The raw reader: the stored documents through PyMongo with its own client and hand-written
queries, sharing nothing with the connector, so the conformance suite sees what a data team
would see."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import TYPE_CHECKING, Any

from connectors.mongodb.settings import Settings

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient

__all__ = ["MongoRawReader"]


class MongoRawReader:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AsyncMongoClient[dict[str, Any]] | None = None

    def _collection(self) -> Any:
        if self._client is None:
            from connectors.mongodb.client import _pymongo

            AsyncMongoClient = _pymongo().AsyncMongoClient
            millis = int(self._settings.timeout * 1000)
            self._client = AsyncMongoClient(
                self._settings.url, serverSelectionTimeoutMS=millis, timeoutMS=millis,
                tz_aware=True,
            )  # fmt: skip
        return self._client[self._settings.database][self._settings.collection]

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        async with asyncio.timeout(self._settings.timeout):
            document = await self._collection().find_one({"_id": name})
        if document is None or "tombstone" in document:
            return None  # a tombstone is not a record
        text = document.get("data_json")
        return {
            "name": document["_id"],
            "collection": document["collection"],
            "version": int(document["version"]),
            "data": json.loads(text) if isinstance(text, str) else document["data"],
            "updated_at": document["updated_at"],
            "document": document,
        }

    async def count_raw(self, prefix: str = "") -> int:
        # An anchored regular expression, not the connector's range query.
        pattern = "^" + re.escape(prefix)
        async with asyncio.timeout(self._settings.timeout):
            query = {"_id": {"$regex": pattern}, "tombstone": {"$exists": False}}
            return int(await self._collection().count_documents(query))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.timeout):
                    await client.close()
