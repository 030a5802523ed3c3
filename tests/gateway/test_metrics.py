"""``GET /metrics`` over real HTTP, with a real write-behind store behind the server."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.protocol import Message, RecordAction, Topic
from tests.conftest import ServerFactory
from tests.gateway.test_server import http_get


def parse(body: bytes) -> dict[str, float]:
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            values[name] = float(value)
    return values


async def test_metrics_count_connections_and_flushes(
    make_server: ServerFactory, connect, tmp_path: Path
) -> None:
    server = await make_server(
        {
            "storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{tmp_path}/m.db"},
            "write_behind": {"interval": 60},
        }
    )
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    writer = await connect(to=url)
    for i in range(3):
        await writer.send(
            Message(
                Topic.RECORD,
                RecordAction.CREATEANDUPDATE,
                name=f"m/{i}",
                version=-1,
                data='{"n":1}',
            )
        )
    await writer.send(Message(Topic.RECORD, RecordAction.HEAD, name="m/2"))
    await writer.recv_until(Topic.RECORD, RecordAction.HEAD_RESPONSE)

    status, body = await http_get(server.port, "/metrics")
    assert status == 200
    before = parse(body)
    assert before["recordgate_connections"] == 1
    assert before["recordgate_store_pending"] == 3
    assert before["recordgate_store_flushed_total"] == 0
    assert re.search(rb"^# TYPE recordgate_store_flushed_total counter$", body, re.M)

    await server.store.flush()  # type: ignore[attr-defined]
    after = parse((await http_get(server.port, "/metrics"))[1])
    assert after["recordgate_store_pending"] == 0
    assert after["recordgate_store_flushed_total"] == 3
    assert after["recordgate_store_cached"] == 3


async def test_metrics_path_comes_from_the_config(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"metrics_path": "/internal/metrics"}})
    assert (await http_get(server.port, "/metrics"))[0] == 404
    status, body = await http_get(server.port, "/internal/metrics")
    assert status == 200 and b"recordgate_connections 0" in body
