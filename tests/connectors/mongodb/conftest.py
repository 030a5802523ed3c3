"""MongoDB connector fixtures, against the NX-27017 **stand-in** (no genuine MongoDB here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from connectors.mongodb import MongoConnector
from tests.standins.mongodb import MongoStandin

MakeMongo = Callable[..., Awaitable[MongoConnector]]


@pytest.fixture
def database() -> str:
    """A database of this test's own (the stand-in keeps each in memory)."""
    return f"rg_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_mongo(mongodb_standin: MongoStandin, database: str) -> AsyncIterator[MakeMongo]:
    """``await make_mongo(**options)``: an opened connector on the stand-in, in ``database``."""
    made: list[MongoConnector] = []

    async def make(open: bool = True, **options: Any) -> MongoConnector:
        options.setdefault("timeout", 5)
        connector = MongoConnector(mongodb_standin.url(database), **options)
        made.append(connector)
        if open:
            await connector.open()
        return connector

    yield make
    if made:
        async with MongoConnector(mongodb_standin.url(database)) as cleaner:
            await cleaner.collection.database.client.drop_database(database)
    for connector in made:
        await connector.close()


@pytest.fixture
async def mongo(make_mongo: MakeMongo) -> MongoConnector:
    return await make_mongo()
