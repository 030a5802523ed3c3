"""Fixtures for client tests: connected ``Client``s against the real server, and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.auth import AuthResult
from gateway.client import Client, ConnectionState
from gateway.server import Server

ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(url: str) -> AsyncIterator[ClientFactory]:
    """``await make_client('alice', **options)``: a logged-in client, closed after the test."""
    clients: list[Client] = []

    async def make(user: str | None = "svc", *, to: str | None = None, **options: Any) -> Client:
        options.setdefault("request_timeout", 2.0)
        options.setdefault("reconnect_delay", 0.05)
        client = Client(to or url, auth={"username": user} if user else {}, **options)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for client in clients:
        await client.close()


class Inbox:
    """A callback that queues what it is called with, and waits for it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __call__(self, *args: Any) -> None:
        self.queue.put_nowait(args[0] if len(args) == 1 else args)

    async def get(self, timeout: float = 2.0) -> Any:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def silent(self, seconds: float = 0.2) -> None:
        await asyncio.sleep(seconds)
        assert self.queue.empty(), f"expected nothing, got {self.queue.get_nowait()!r}"


async def settle(client: Client) -> None:
    """One round trip: everything ``client`` sent before has been processed by the server."""
    await client.record.head("__settle__")


def drop(server: Server, user: str | None = None) -> None:
    """Cut the server side of every connection (of ``user``) without a closing handshake."""
    for conn in list(server.connections):
        if user is None or conn.user_id == user:
            conn.abort()


async def reconnect(server: Server, client: Client, user: str | None = None) -> None:
    """Drop ``client`` (or ``user``) and wait until it is open again and resubscribed."""
    states: list[ConnectionState] = []
    back = asyncio.Event()

    def seen(state: ConnectionState) -> None:
        states.append(state)
        if state is ConnectionState.OPEN:
            back.set()

    stop = client.on_state_change(seen)
    drop(server, user)
    try:
        await asyncio.wait_for(back.wait(), 3)
    finally:
        stop()
    assert states == [ConnectionState.RECONNECTING, ConnectionState.OPEN]
    await settle(client)


class Gate:
    """An authenticator that holds logins while closed: keeps a client away on purpose."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.refuse: set[str] = set()

    async def authenticate(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult:
        await self.open.wait()
        user = str(auth_data.get("username") or "open")
        if user in self.refuse:
            return AuthResult(False, client_data={"reason": "refused"})
        return AuthResult(True, user_id=user, client_data={"hello": user})
