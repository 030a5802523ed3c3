"""Error mapping: failures leave a connector only as the project's storage errors, in time."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from conformance.target import ConnectorTarget, unreachable_url
from connectors.base import Connector, Put, StorageRejected, StorageTimeout, StorageUnavailable

pytestmark = pytest.mark.asyncio

TIMEOUT = 2.0  # passed as the connector's `timeout` option
SLACK = 3.0  # scheduling and teardown allowance on a busy machine


@pytest.mark.requires("network")
async def test_unreachable_server_fails_fast(connector_target: ConnectorTarget) -> None:
    url = unreachable_url(connector_target.cls, connector_target.url)
    if url is None:
        pytest.skip(f"{connector_target.url!r} names no server (embedded database)")
    connector = connector_target.cls(url, **{**connector_target.options, "timeout": str(TIMEOUT)})  # type: ignore[call-arg]
    started = time.monotonic()
    try:
        with pytest.raises((StorageUnavailable, StorageTimeout)):
            # The outer bound only detects a hang: TimeoutError is not a StorageError.
            async with asyncio.timeout(TIMEOUT + SLACK):
                await connector.open()
                await connector.get("any")
    finally:
        await connector.close()
    assert time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.parametrize(
    "data",
    [{"nan": math.nan}, {"inf": [math.inf]}, {"set": {1, 2}}, {"obj": object()}],
    ids=["nan", "infinity", "set", "object"],
)
async def test_non_json_data_is_rejected(
    connector: Connector, name_prefix: str, data: object
) -> None:
    name = f"{name_prefix}/bad"
    with pytest.raises(StorageRejected):
        await connector.write([Put(name, 1, data)])  # type: ignore[arg-type]
    assert await connector.get(name) is None


async def test_rejected_batch_writes_nothing(connector: Connector, name_prefix: str) -> None:
    good, bad = f"{name_prefix}/good", f"{name_prefix}/bad"
    with pytest.raises(StorageRejected):
        await connector.write([Put(good, 1, {}), Put(bad, 1, {"nan": math.nan})])
    assert await connector.get(good) is None
