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


async def test_the_official_prometheus_parser_reads_every_metric(
    make_server: ServerFactory, connect, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.gateway.httpapi.client import exchange, ops

    server = await make_server(
        {"storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{tmp_path}/p.db"}}
    )
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    subscriber = await connect(to=url)
    for name in ("p/1", "p/2"):
        await subscriber.send(
            Message(Topic.RECORD, RecordAction.SUBSCRIBECREATEANDREAD, names=[name])
        )
        await subscriber.recv_until(Topic.RECORD, RecordAction.READ_RESPONSE)
    write = {"topic": "record", "action": "write", "recordName": "p/1", "data": {"n": 1}}
    await ops(server.port, write)  # answered once durable: one flush at least
    await subscriber.recv_until(Topic.RECORD, RecordAction.UPDATE)

    status, headers, body = await exchange(
        server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"  # just one
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}

    def value(family: str, sample: str, **labels: str) -> float:
        found = [
            s.value for s in families[family].samples if s.name == sample and s.labels == labels
        ]
        assert len(found) == 1, (sample, labels, families[family].samples)
        return found[0]

    received = "recordgate_messages_received"  # the parser drops a counter's _total
    assert families[received].type == "counter"
    # the two subscribes, and the HTTP write
    assert value(received, f"{received}_total", topic="record") == 3
    assert value(received, f"{received}_total", topic="event") == 0
    sent = "recordgate_messages_sent"
    # an ack and a read response per subscribe, then the live update
    assert value(sent, f"{sent}_total", topic="record") == 5
    assert value(sent, f"{sent}_total", topic="event") == 0
    assert value("recordgate_records_subscribed", "recordgate_records_subscribed") == 2
    flush = families["recordgate_store_flush_duration_seconds"]
    assert flush.type == "histogram"
    count = value(flush.name, f"{flush.name}_count")
    assert count >= 1
    buckets = [s for s in flush.samples if s.name.endswith("_bucket")]
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    assert buckets[-1].labels == {"le": "+Inf"} and buckets[-1].value == count
    assert value(flush.name, f"{flush.name}_sum") > 0
    errors = "recordgate_storage_errors"
    for kind in ("unavailable", "timeout", "rejected", "other"):
        assert value(errors, f"{errors}_total", kind=kind) == 0
    for family in families.values():
        assert family.name.startswith("recordgate_"), family.name
