"""RPC through the client: provide, make, errors and timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.exceptions import ClientError, RequestTimeout, RpcError
from tests.conftest import url_of


async def test_make_calls_a_sync_or_async_provider(make_client) -> None:
    provider, caller = await make_client("provider"), await make_client("caller")

    async def slow_add(data: Any) -> Any:
        await asyncio.sleep(0.01)
        return data["a"] + data["b"]

    await provider.rpc.provide("add", slow_add)
    await provider.rpc.provide("echo", lambda data: data)
    assert await caller.rpc.make("add", {"a": 1, "b": 2}) == 3
    assert await caller.rpc.make("echo") is None
    assert await caller.rpc.make("echo", ["x", {"y": None}]) == ["x", {"y": None}]
    assert sorted(provider.rpc.names()) == ["add", "echo"]
    results = await asyncio.gather(*(caller.rpc.make("add", {"a": i, "b": i}) for i in range(10)))
    assert results == [2 * i for i in range(10)]


async def test_a_provider_exception_reaches_the_caller_as_rpc_error(make_client) -> None:
    provider, caller = await make_client("provider"), await make_client("caller")

    def fail(data: Any) -> Any:
        raise ValueError("out of stock")

    await provider.rpc.provide("order", fail)
    with pytest.raises(RpcError) as caught:
        await caller.rpc.make("order", {"id": 1})
    assert (caught.value.code, caught.value.name) == ("out of stock", "order")


async def test_no_provider(make_client) -> None:
    caller = await make_client()
    with pytest.raises(RpcError) as caught:
        await caller.rpc.make("nobody")
    assert caught.value.code == "NO_RPC_PROVIDER"


async def test_unprovide_stops_serving(make_client) -> None:
    provider, caller = await make_client("provider"), await make_client("caller")
    unprovide = await provider.rpc.provide("f", lambda data: 1)
    assert await caller.rpc.make("f") == 1
    await unprovide()
    with pytest.raises(RpcError, match="NO_RPC_PROVIDER"):
        await caller.rpc.make("f")
    await provider.rpc.provide("f", lambda data: 2)  # and can provide it again
    assert await caller.rpc.make("f") == 2


async def test_providing_twice_is_refused_locally(make_client) -> None:
    provider = await make_client()
    await provider.rpc.provide("f", lambda data: 1)
    with pytest.raises(ClientError, match="already provided"):
        await provider.rpc.provide("f", lambda data: 2)


async def test_server_response_timeout_raises_rpc_error(make_server, make_client) -> None:
    server = await make_server({"rpc": {"response_timeout": 0.2}})
    provider = await make_client("provider", to=url_of(server))
    caller = await make_client("caller", to=url_of(server))
    await provider.rpc.provide("stuck", lambda data: asyncio.sleep(5))
    with pytest.raises(RpcError, match="RESPONSE_TIMEOUT"):
        await caller.rpc.make("stuck")


async def test_client_side_timeout_raises_request_timeout(make_client) -> None:
    provider, caller = await make_client("provider"), await make_client("caller")
    await provider.rpc.provide("stuck", lambda data: asyncio.sleep(5))
    with pytest.raises(RequestTimeout):
        await caller.rpc.make("stuck", timeout=0.1)
