"""The PyMongo client and collection a connector uses (PyMongo imported here, lazily).

Every deadline of the driver is a little less than the connector's ``timeout``: server
selection, connecting, socket reads and the whole operation (``timeoutMS``, PyMongo's
client-side operation timeout, which also sends ``maxTimeMS`` to the server). Integers come back
as ``int``, never as ``bson.Int64``, and datetimes timezone-aware (UTC).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from connectors._common import import_driver
from connectors.mongodb.settings import Settings

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["codec_options", "connect", "driver_deadline", "new_client"]


def _pymongo() -> Any:
    return import_driver("pymongo", "mongodb")


def driver_deadline(timeout: float) -> float:
    """Seconds for the driver's deadlines: less than ``timeout``, so its own error (which says
    why: refused, no primary, ...) arrives before ``asyncio.timeout`` cuts the call off. Server
    selection overshoots its deadline by up to half a second (it waits in heartbeat steps)."""
    return max(timeout * 0.5, timeout - 0.6)


def new_client(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """A client of ``settings.url``; it connects on first use."""
    pymongo = _pymongo()
    millis = max(1, int(driver_deadline(settings.timeout) * 1000))
    client: AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
        settings.url,
        serverSelectionTimeoutMS=millis,
        connectTimeoutMS=millis,
        socketTimeoutMS=millis,
        timeoutMS=millis,
        tz_aware=True,
        appname="recordgate",
    )
    return client


@functools.cache
def codec_options() -> Any:
    """Decoding for reads: int64 as ``int`` (BSON's int64 would be ``bson.Int64``, which is
    not ``int``), datetimes in UTC."""
    from bson.codec_options import CodecOptions, TypeDecoder, TypeRegistry
    from bson.int64 import Int64

    class _Int64AsInt(TypeDecoder):
        bson_type = Int64

        def transform_bson(self, value: Any) -> Any:
            return int(value)

    return CodecOptions(tz_aware=True, type_registry=TypeRegistry([_Int64AsInt()]))


async def connect(
    settings: Settings,
) -> tuple[AsyncMongoClient[dict[str, Any]], AsyncCollection[dict[str, Any]]]:
    """A connected client and the records collection with the configured write concern."""
    pymongo = _pymongo()
    client = new_client(settings)
    try:
        await client.aconnect()
    except BaseException:
        await client.close()
        raise
    collection = client[settings.database].get_collection(
        settings.collection,
        codec_options=codec_options(),
        write_concern=pymongo.WriteConcern(w=settings.write_concern, j=settings.journal),
    )
    return client, collection
