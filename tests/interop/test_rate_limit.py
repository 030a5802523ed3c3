"""The official JS client past server.max_messages_per_second: it ignores the CONNECTION ERROR
(it has no handler for it), sees the close, reconnects, logs in again and is served."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ServerFactory, url_of
from tests.interop.conftest import scenario_runner

pytestmark = pytest.mark.interop


async def test_the_official_client_reconnects_after_the_rate_limit(
    make_server: ServerFactory, node: str
) -> None:
    server = await make_server({"server": {"max_messages_per_second": 5.0, "message_burst": 10}})
    run = scenario_runner(node, url_of(server).removeprefix("ws://"))
    result = await asyncio.to_thread(run, "rate_limit")
    assert result["states"][0] == "RECONNECTING" and result["states"][-1] == "OPEN"
    assert result["after"] == {"ok": -1}
    assert server.trips["server.max_messages_per_second"] >= 1
