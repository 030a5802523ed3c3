"""Stored layout, read through the native driver: collection, key, version, data, timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import DEFAULT_COLLECTION, Connector, Put, RawReader

pytestmark = [pytest.mark.asyncio, pytest.mark.requires("raw")]


def _utc(value: object) -> datetime:
    assert isinstance(value, datetime), f"updated_at is {type(value).__name__}, not datetime"
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_item_fields(connector: Connector, raw_reader: RawReader, name_prefix: str) -> None:
    name = f"{name_prefix}/42"
    before = datetime.now(UTC) - timedelta(seconds=5)  # allow for clock granularity
    await connector.write([Put(name, 7, {"age": 31, "tags": ["x"]})])
    item = await raw_reader.read_raw(name)
    assert item is not None
    assert item["name"] == name
    assert item["collection"] == name_prefix
    assert item["version"] == 7
    assert item["data"] == {"age": 31, "tags": ["x"]}
    assert before <= _utc(item["updated_at"]) <= datetime.now(UTC) + timedelta(seconds=5)


async def test_collection_is_first_segment(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    name = f"{name_prefix}/a/b/c"
    await connector.write([Put(name, 1, {})])
    item = await raw_reader.read_raw(name)
    assert item is not None and item["collection"] == name_prefix and item["name"] == name


@pytest.mark.parametrize("shape", ["no-slash", "/leading-slash"])
async def test_default_collection(
    connector: Connector, raw_reader: RawReader, name_prefix: str, shape: str
) -> None:
    name = f"{name_prefix}-{shape}" if shape == "no-slash" else f"/{name_prefix}"
    await connector.write([Put(name, 1, [1])])
    item = await raw_reader.read_raw(name)
    assert item is not None and item["collection"] == DEFAULT_COLLECTION
    assert item["data"] == [1]


async def test_update_moves_version_and_timestamp(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    name = f"{name_prefix}/u"
    await connector.write([Put(name, 1, {"v": 1})])
    first = await raw_reader.read_raw(name)
    await connector.write([Put(name, 2, {"v": 2})])
    second = await raw_reader.read_raw(name)
    assert first is not None and second is not None
    assert (second["version"], second["data"]) == (2, {"v": 2})
    assert _utc(second["updated_at"]) >= _utc(first["updated_at"])
    assert await raw_reader.count_raw(name) == 1  # updated in place, not a second item


async def test_refused_write_leaves_layout_alone(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    name = f"{name_prefix}/kept"
    await connector.write([Put(name, 3, {"v": 3})])
    before = await raw_reader.read_raw(name)
    await connector.write([Put(name, 2, {"v": 2})])
    assert await raw_reader.read_raw(name) == before
