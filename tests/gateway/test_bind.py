"""``server.host: "::"`` listens on every interface, IPv4 and IPv6, over real sockets (asyncio
and uvloop alike set IPV6_V6ONLY, so before, IPv4 clients were refused); a specific address
stays exactly that address."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from gateway.client import Client
from gateway.server import Server
from tests.certs import make_certs
from tests.conftest import ServerFactory
from tests.wire import WireClient


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def dual_stack_available() -> bool:
    """Whether this machine has ::1 and dual-stack sockets (what these tests need)."""
    return _ipv6_loopback() and socket.has_dualstack_ipv6()


pytestmark = pytest.mark.skipif(
    not dual_stack_available(),
    reason="needs IPv6 loopback (::1) and dual-stack sockets",
)


def _url(host: str, server: Server) -> str:
    return f"ws://{host}:{server.port}{server.config.server.path}"


async def _logs_in(url: str) -> bool:
    try:
        client = await WireClient.connect(url, login={})
    except OSError:  # refused: nothing listens there
        return False
    await client.close()
    return True


@pytest.mark.parametrize("host", ["::", "0:0:0:0:0:0:0:0"])
async def test_unspecified_ipv6_host_serves_ipv4_and_ipv6(
    make_server: ServerFactory, host: str
) -> None:
    server = await make_server({"server": {"host": host}})
    assert await _logs_in(_url("127.0.0.1", server))
    assert await _logs_in(_url("[::1]", server))


async def test_specific_hosts_stay_specific(make_server: ServerFactory) -> None:
    ipv6 = await make_server({"server": {"host": "::1"}})
    assert await _logs_in(_url("[::1]", ipv6))
    assert not await _logs_in(_url("127.0.0.1", ipv6))
    ipv4 = await make_server({"server": {"host": "127.0.0.1"}})
    assert await _logs_in(_url("127.0.0.1", ipv4))
    assert not await _logs_in(_url("[::1]", ipv4))


async def test_ipv4_clients_on_the_dual_stack_socket_count_as_ipv4(
    make_server: ServerFactory,
) -> None:
    """They arrive as ::ffff:127.0.0.1; server.max_connections_per_ip counts them as
    127.0.0.1, apart from ::1."""
    server = await make_server({"server": {"host": "::", "max_connections_per_ip": 1}})
    first = await WireClient.connect(_url("127.0.0.1", server), login={})
    try:
        with pytest.raises(InvalidStatus) as refused:  # the second from 127.0.0.1
            await WireClient.connect(_url("127.0.0.1", server), login={})
        assert refused.value.response.status_code == 503
        assert await _logs_in(_url("[::1]", server))  # another address
    finally:
        await first.close()


async def test_without_dual_stack_sockets_unspecified_ipv6_warns_and_serves_ipv6(
    make_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where the OS cannot clear IPV6_V6ONLY (socket.has_dualstack_ipv6() is false), "::" is
    IPv6 only, as before 3a3f886, and the operator is told so rather than left to find IPv4
    clients refused."""
    monkeypatch.setattr(socket, "has_dualstack_ipv6", lambda: False)
    with caplog.at_level(logging.WARNING, logger="gateway.bind"):
        server = await make_server({"server": {"host": "::"}})
    assert any("no dual-stack sockets; IPv6 only" in r.getMessage() for r in caplog.records)
    assert await _logs_in(_url("[::1]", server))
    assert not await _logs_in(_url("127.0.0.1", server))


async def test_tls_on_the_dual_stack_socket_serves_both_families(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """The dual-stack socket is handed to create_server(sock=..., ssl=...): wss:// works over
    IPv4 and IPv6 alike."""
    certs = make_certs(tmp_path)
    tls = {"cert": str(certs.server_cert), "key": str(certs.server_key)}
    server = await make_server({"server": {"host": "::", "tls": tls}})
    trusting = ssl.create_default_context(cafile=str(certs.ca))
    for host in ("127.0.0.1", "[::1]"):
        url = f"wss://{host}:{server.port}/deepstream"
        async with Client(url, auth={}, ssl=trusting) as client:
            await client.record.set_data(f"tls/{host}", {"via": host})
            assert await client.record.snapshot(f"tls/{host}") == {"via": host}
