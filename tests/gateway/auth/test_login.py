"""Logins over real sockets with configured strategies: what a client gets back, what it never
sees, attempts, and the connection data passed to an http endpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway.auth.passwords import hash_password
from gateway.client import Client
from gateway.exceptions import AuthenticationFailed
from gateway.protocol import AuthAction, Message, Topic
from tests.conftest import ServerFactory
from tests.gateway.auth.conftest import Endpoint
from tests.wire import WireClient

ADA = hash_password("ada-pass")


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.yml"
    path.write_text(
        f"ada: {{password: '{ADA}', serverData: {{role: admin, secret: s1}}, "
        f"clientData: {{theme: dark}}}}\n"
    )
    return path


async def test_file_logins_over_the_wire(make_server: ServerFactory, users: Path) -> None:
    server = await make_server({"auth": [{"type": "file", "users": str(users)}]})
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    async with Client(url, auth={"username": "ada", "password": "ada-pass"}) as client:
        assert client.client_data == {"theme": "dark"}
    async with await WireClient.connect(url) as peer:
        await peer.handshake()
        reply = await peer.login({"username": "ada", "password": "ada-pass"})
        assert reply.action == AuthAction.AUTH_SUCCESSFUL
        assert json.loads(reply.data) == {"theme": "dark"}  # serverData stays on the server
    with pytest.raises(AuthenticationFailed):
        async with Client(url, auth={"username": "ada", "password": "nope"}, reconnect=False):
            pass
    with pytest.raises(AuthenticationFailed):
        async with Client(url, auth={"username": "zed", "password": "ada-pass"}, reconnect=False):
            pass


async def test_too_many_attempts_close_the_connection(
    make_server: ServerFactory, users: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server({"auth": [{"type": "file", "users": str(users)}]})
    peer = await WireClient.connect(f"ws://127.0.0.1:{server.port}/deepstream")
    await peer.handshake()
    seen = []
    with caplog.at_level(logging.DEBUG):
        for i in range(3):
            auth = {"username": "ada", "password": f"guess-{i}"}
            await peer.send(Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps(auth)))
            seen.append((await peer.recv(timeout=5)).action)
        final = await peer.recv(timeout=5)
    assert seen == [AuthAction.AUTH_UNSUCCESSFUL] * 3
    assert (final.topic, final.action) == (Topic.AUTH, AuthAction.TOO_MANY_AUTH_ATTEMPTS)
    assert "guess-" not in caplog.text and "ada-pass" not in caplog.text


async def test_the_http_strategy_gets_the_connections_address_and_chosen_headers(
    make_server: ServerFactory, endpoint: Endpoint
) -> None:
    endpoint.answers = [(200, {"id": "ada", "clientData": {"ok": 1}}, 0)]
    server = await make_server(
        {"auth": [{"type": "http", "url": endpoint.url, "headers": ["x-tenant"]}]}
    )
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    async with Client(url, auth={"token": "t"}) as client:
        assert client.client_data == {"ok": 1}
    body = endpoint.requests[0]["json"]
    assert body["authData"] == {"token": "t"}
    assert body["connectionData"]["remoteAddress"] == "127.0.0.1"
    assert body["connectionData"]["headers"] == {}  # the client sent no x-tenant header


async def test_open_auth_on_a_public_address_warns(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await make_server({"server": {"host": "0.0.0.0"}})
    assert "authentication is open" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await make_server({"server": {"host": "127.0.0.1"}})
    assert "authentication is open" not in caplog.text


async def test_the_http_strategy_gets_plain_ipv4_addresses_on_a_dual_stack_socket(
    make_server: ServerFactory, endpoint: Endpoint
) -> None:
    """With ``server.host: "::"`` IPv4 clients reach the socket as ``::ffff:a.b.c.d``; the
    endpoint is given the client's address as with ``0.0.0.0`` (``127.0.0.1``), so an address
    list it checks means the same whichever host the server listens on. IPv6 stays as is."""
    from tests.gateway.test_bind import dual_stack_available

    if not dual_stack_available():
        pytest.skip("needs IPv6 loopback (::1) and dual-stack sockets")
    endpoint.answers = [(200, {"id": "ada"}, 0)]
    server = await make_server(
        {"server": {"host": "::"}, "auth": [{"type": "http", "url": endpoint.url}]}
    )
    for host in ("127.0.0.1", "[::1]"):
        async with Client(f"ws://{host}:{server.port}/deepstream", auth={"token": "t"}):
            pass
    seen = [request["json"]["connectionData"]["remoteAddress"] for request in endpoint.requests]
    assert seen == ["127.0.0.1", "::1"]
