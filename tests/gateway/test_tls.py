"""TLS on the server's port: wss:// and https:// with certificates the test makes, client
certificates, configuration errors, and the official JS client over wss://."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.client import Client
from gateway.config import config_from_dict
from gateway.exceptions import ConfigError
from gateway.server import Server
from tests.certs import Certs, make_certs
from tests.conftest import ServerFactory


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_section(certs: Certs, **extra: Any) -> dict[str, Any]:
    return {"tls": {"cert": str(certs.server_cert), "key": str(certs.server_key), **extra}}


def _trusting(certs: Certs, *, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if client is not None:
        context.load_cert_chain(*client)
    return context


async def test_the_python_client_works_over_wss(make_server: ServerFactory, certs: Certs) -> None:
    server = await make_server({"server": tls_section(certs)})
    url = f"wss://127.0.0.1:{server.port}/deepstream"
    async with Client(url, auth={"username": "ada"}, ssl=_trusting(certs)) as client:
        record = await client.record.get("tls/doc")
        await record.set({"secret": "sauce"})
        assert (await client.record.snapshot("tls/doc")) == {"secret": "sauce"}


async def test_https_serves_the_health_check_and_plain_http_is_refused(
    make_server: ServerFactory, certs: Certs
) -> None:
    server = await make_server({"server": tls_section(certs)})
    async with httpx.AsyncClient(verify=_trusting(certs)) as http:
        answer = await http.get(f"https://127.0.0.1:{server.port}/health-check")
        assert answer.status_code == 200
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(f"http://127.0.0.1:{server.port}/health-check", timeout=5)


async def test_a_client_that_does_not_trust_the_certificate_cannot_connect(
    make_server: ServerFactory, certs: Certs
) -> None:
    server = await make_server({"server": tls_section(certs)})
    client = Client(f"wss://127.0.0.1:{server.port}/deepstream", reconnect=False)
    with pytest.raises(Exception) as error:
        await client.connect()
    assert "CERTIFICATE_VERIFY_FAILED" in repr(error.value) or "certificate" in repr(error.value)
    await client.close()


async def test_required_client_certificates(make_server: ServerFactory, certs: Certs) -> None:
    server = await make_server(
        {"server": tls_section(certs, ca=str(certs.ca), client_cert="required")}
    )
    url = f"wss://127.0.0.1:{server.port}/deepstream"
    good = _trusting(certs, client=(certs.client_cert, certs.client_key))
    async with Client(url, ssl=good) as client:
        assert (await client.record.get("mtls")).version == 0
    for context in (
        _trusting(certs),  # no certificate
        _trusting(certs, client=(certs.stranger_cert, certs.stranger_key)),  # not from our CA
    ):
        stranger = Client(url, ssl=context, reconnect=False)
        with pytest.raises(Exception):  # noqa: B017 - the handshake fails, one way or another
            await stranger.connect()
        await stranger.close()


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"cert": "missing.pem", "key": "missing.key"}, "no such file"),
        ({"cert": "CLIENT", "key": "SERVERKEY"}, "cannot use certificate"),
        ({"cert": "SERVER", "key": "SERVERKEY", "client_cert": "required"}, "tls.ca is needed"),
        ({"cert": "SERVER", "key": "SERVERKEY", "client_cert": "maybe"}, "none, optional"),
    ],
)
def test_configuration_errors_name_the_problem(
    certs: Certs, tls: dict[str, str], message: str
) -> None:
    paths = {
        "SERVER": certs.server_cert,
        "SERVERKEY": certs.server_key,
        "CLIENT": certs.client_cert,
    }
    tls = {k: str(paths.get(v, v)) for k, v in tls.items()}
    with pytest.raises(ConfigError, match=message):
        Server(config_from_dict({"server": {"tls": tls}, "storage": {"type": "memory"}}))


async def test_failed_tls_handshakes_leave_nothing_behind(
    make_server: ServerFactory, certs: Certs
) -> None:
    server = await make_server({"server": tls_section(certs)})
    for _ in range(20):  # plain HTTP to the TLS port: each handshake fails
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health-check HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # the server hangs up
        writer.close()
    assert server.connection_count() == 0
    await asyncio.wait_for(server.close(), 10)  # nothing orphaned to wait for
