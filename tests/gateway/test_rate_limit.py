"""The per-connection message rate limit (server.max_messages_per_second, message_burst) over
real sockets: a client within it is served, one past it gets CONNECTION ERROR and is closed,
the trip shows in /metrics, and other clients are untouched."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from gateway.client import Client
from gateway.protocol import ConnectionAction, EventAction, Message, Topic
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_server import http_get
from tests.wire import WireClient


def _emit(i: int) -> Message:
    return Message(Topic.EVENT, EventAction.EMIT, name="e", data=str(i))


async def test_a_burst_past_the_limit_is_answered_and_closed(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_messages_per_second": 10.0, "message_burst": 20}})
    url = url_of(server)
    flooder, bystander = (
        await WireClient.connect(url, login={}),
        await WireClient.connect(url, login={}),
    )
    await bystander.send(
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["e"], correlation_id="1")
    )
    assert (await bystander.recv()).is_ack
    for i in range(40):  # the handshake and login took tokens; about 18 more pass, then it trips
        await flooder.send(_emit(i))
    got = await flooder.recv()
    assert (got.topic, got.action) == (Topic.CONNECTION, ConnectionAction.ERROR)
    assert "server.max_messages_per_second" in json.loads(got.data or "")
    with pytest.raises(ConnectionClosed) as closed:
        await flooder.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    delivered = []
    while True:
        try:
            delivered.append(int((await bystander.recv(timeout=0.5)).data or ""))
        except TimeoutError:
            break
    # In order, and nothing past the trip (the bucket refills 10/s meanwhile: a little slack).
    assert delivered == list(range(len(delivered))) and 15 <= len(delivered) <= 25
    body = (await http_get(server.port, "/metrics"))[1].decode()
    assert 'recordgate_limit_trips_total{limit="server.max_messages_per_second"} 1' in body
    await bystander.send(_emit(99))  # the bystander is still served
    await bystander.expect_silence()
    await bystander.close()


async def test_a_steady_client_within_the_rate_is_never_cut(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_messages_per_second": 50.0, "message_burst": 5}})
    client = await WireClient.connect(url_of(server), login={})
    for i in range(30):  # 25/s for 1.2 s: well under 50/s, far over the burst of 5 in total
        await client.send(_emit(i))
        await asyncio.sleep(0.04)
    await client.expect_silence(0.3)
    assert server.trips["server.max_messages_per_second"] == 0
    await client.close()


async def test_zero_turns_it_off(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_messages_per_second": 0}})
    client = await WireClient.connect(url_of(server), login={})
    for i in range(5000):
        await client.send(_emit(i))
    await client.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["x"], correlation_id="z"))
    assert (await client.recv(timeout=10)).correlation_id == "z"
    await client.close()


async def test_the_python_client_hears_why_and_reconnects(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_messages_per_second": 20.0, "message_burst": 10}})
    heard: list[str] = []
    async with Client(url_of(server), auth={"username": "fast"}, reconnect_delay=0.05) as client:
        client.on_error(lambda error: heard.append(str(error)))
        for i in range(30):
            client.event.emit("e", i)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert heard and "server.max_messages_per_second" in heard[0]
        await asyncio.sleep(1.0)  # reconnected and the bucket refilled: served again
        assert await client.record.head("anything") == -1
