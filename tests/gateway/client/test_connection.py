"""Connecting, logging in, heartbeats, state, and failures of the connection itself."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import serve

from gateway.client import Client, ConnectionState
from gateway.exceptions import AuthenticationFailed, ClientError, NotConnected, RequestTimeout
from gateway.protocol import AuthAction, ConnectionAction, Message, Topic, decode, encode
from tests.conftest import url_of

from .conftest import Gate, Inbox


async def test_connect_logs_in_and_reports_states(make_server) -> None:
    gate = Gate()
    server = await make_server(authenticator=gate)
    client = Client(url_of(server), auth={"username": "ada"})
    states = Inbox()
    client.on_state_change(states)
    assert client.state is ConnectionState.CLOSED
    async with client:
        assert client.state is ConnectionState.OPEN
        assert client.client_data == {"hello": "ada"}
        assert [c.user_id for c in server.connections] == ["ada"]
    assert [await states.get() for _ in range(3)] == [
        ConnectionState.CONNECTING,
        ConnectionState.OPEN,
        ConnectionState.CLOSED,
    ]
    await asyncio.sleep(0.05)
    assert not server.connections


async def test_refused_login_raises_authentication_failed(make_server) -> None:
    gate = Gate()
    gate.refuse.add("mallory")
    server = await make_server(authenticator=gate)
    client = Client(url_of(server), auth={"username": "mallory"})
    with pytest.raises(AuthenticationFailed, match="AUTH_UNSUCCESSFUL"):
        await client.connect()
    assert client.state is ConnectionState.CLOSED


async def test_unreachable_server_raises_not_connected(server) -> None:
    port = server.port
    await server.close()
    client = Client(f"127.0.0.1:{port}", request_timeout=1.0)
    with pytest.raises(NotConnected, match="cannot connect"):
        await client.connect()
    assert client.state is ConnectionState.CLOSED


async def test_a_second_connect_is_refused(make_client) -> None:
    client = await make_client()
    with pytest.raises(ClientError, match="already open"):
        await client.connect()


async def test_calls_while_closed_raise_not_connected(url) -> None:
    client = Client(url)
    with pytest.raises(NotConnected):
        client.event.emit("x", 1)
    with pytest.raises(NotConnected):
        await client.rpc.make("f")
    with pytest.raises(NotConnected):
        await client.record.get("r")


async def test_closing_fails_pending_requests(make_client) -> None:
    provider, caller = await make_client("p"), await make_client("c")
    await provider.rpc.provide("slow", lambda data: asyncio.sleep(5))
    call = asyncio.create_task(caller.rpc.make("slow"))
    await asyncio.sleep(0.1)
    await caller.close()
    with pytest.raises(NotConnected):
        await call
    assert caller.state is ConnectionState.CLOSED


async def test_heartbeats_keep_an_idle_client_connected(make_server, make_client) -> None:
    server = await make_server({"server": {"heartbeat_interval": 0.2}})
    pinging = await make_client(to=url_of(server), heartbeat_interval=0.05)
    silent = await make_client(to=url_of(server), heartbeat_interval=10, reconnect=False)
    await asyncio.sleep(1.0)  # the server drops a socket silent for 2 of its intervals
    assert silent.state is ConnectionState.CLOSED
    assert pinging.state is ConnectionState.OPEN
    assert len(server.connections) == 1


async def test_a_silent_server_is_dropped_and_reconnected(unused_tcp_port) -> None:
    """A server that stops answering PINGs is given up on after two heartbeat intervals."""
    logins = 0

    async def mute_server(ws) -> None:  # handshake, then silence
        nonlocal logins
        async for frame in ws:
            msg = decode(frame)
            if msg.action == ConnectionAction.CHALLENGE:
                await ws.send(encode(Message(Topic.CONNECTION, ConnectionAction.ACCEPT)))
            elif msg.topic == Topic.AUTH:
                logins += 1
                await ws.send(encode(Message(Topic.AUTH, AuthAction.AUTH_SUCCESSFUL)))

    async with serve(mute_server, "127.0.0.1", unused_tcp_port):
        client = Client(
            f"127.0.0.1:{unused_tcp_port}", heartbeat_interval=0.05, reconnect_delay=0.05
        )
        states = Inbox()
        client.on_state_change(states)
        async with client:
            assert await states.get() is ConnectionState.CONNECTING
            assert await states.get() is ConnectionState.OPEN
            assert await states.get(1) is ConnectionState.RECONNECTING
            assert await states.get(1) is ConnectionState.OPEN
        assert logins >= 2


async def test_a_server_that_never_accepts_times_out(unused_tcp_port) -> None:
    async def deaf_server(ws) -> None:
        async for _ in ws:
            pass

    async with serve(deaf_server, "127.0.0.1", unused_tcp_port):
        client = Client(f"127.0.0.1:{unused_tcp_port}", request_timeout=0.2)
        with pytest.raises(RequestTimeout):
            await client.connect()
        assert client.state is ConnectionState.CLOSED
