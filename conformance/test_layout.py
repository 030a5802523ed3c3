"""Stored layout, read through the native driver: collection, key, version, data, timestamp."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from conformance.plugin import MakeConnector
from connectors.base import DEFAULT_COLLECTION, Connector, Put, RawReader

pytestmark = [pytest.mark.asyncio, pytest.mark.requires("raw")]

PAUSE = 1.1  # seconds between two writes whose timestamps must differ


def _utc(value: object) -> datetime:
    assert isinstance(value, datetime), f"updated_at is {type(value).__name__}, not datetime"
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_item_fields(connector: Connector, raw_reader: RawReader, name_prefix: str) -> None:
    name = f"{name_prefix}/42"
    before = datetime.now(UTC) - timedelta(seconds=5)  # allow for clock granularity
    await connector.write([Put(name, 7, {"age": 31, "tags": ["x"]})])
    item = await raw_reader.read_raw(name)
    assert item is not None
    rule = "rule: each stored item holds name, collection, version, data and updated_at"
    assert item["name"] == name, rule
    assert item["collection"] == name_prefix, f"{rule} (collection: the first segment)"
    assert item["version"] == 7 and type(item["version"]) is int, f"{rule} (an int version)"
    assert item["data"] == {"age": 31, "tags": ["x"]}, f"{rule} (data a native document)"
    stamp = _utc(item["updated_at"])
    assert before <= stamp <= datetime.now(UTC) + timedelta(seconds=5), (
        f"rule: updated_at is the time of the write, in UTC: {stamp}"
    )


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
    # Longer than a timestamp of whole seconds: it must move, not merely not go back.
    await asyncio.sleep(PAUSE)
    await connector.write([Put(name, 2, {"v": 2})])
    second = await raw_reader.read_raw(name)
    assert first is not None and second is not None
    assert (second["version"], second["data"]) == (2, {"v": 2}), "rule: updates land in place"
    moved = _utc(second["updated_at"]) - _utc(first["updated_at"])
    assert moved >= timedelta(seconds=PAUSE - 0.1), (
        f"rule: updated_at moves on every applied write: {PAUSE}s later it moved {moved}"
    )
    assert await raw_reader.count_raw(name) == 1, "rule: an update is not a second item"


async def test_refused_write_leaves_layout_alone(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    name = f"{name_prefix}/kept"
    await connector.write([Put(name, 3, {"v": 3})])
    before = await raw_reader.read_raw(name)
    await asyncio.sleep(PAUSE)
    await connector.write([Put(name, 2, {"v": 2})])  # refused: stale
    await connector.write([Put(name, 3, {"v": 3})])  # applied: the idempotent retry
    assert await raw_reader.read_raw(name) == before, (
        "rule: a refused write or an idempotent retry leaves the stored item alone"
    )


async def test_raw_reader_reads_without_the_connector(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    """The raw reader reads the layout through its own connection, not through the connector
    (which would check the connector against itself)."""
    name = f"{name_prefix}/own"
    connector = await make_connector()
    await connector.write([Put(name, 2, {"own": True})])
    reader = connector.raw_reader()
    try:
        await connector.close()
        item = await reader.read_raw(name)
        rule = "rule: the raw reader reads the stored layout on its own connection"
        assert item is not None and (item["version"], item["data"]) == (2, {"own": True}), rule
        assert await reader.count_raw(name_prefix) == 1, rule
    finally:
        await reader.close()
