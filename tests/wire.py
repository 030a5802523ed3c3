"""A raw deepstream peer for tests: real WebSocket, our codec, no client logic in between.

It lets a test send exactly the bytes it means (bad ones included) and assert on exactly the
messages the server answers with.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    Message,
    RecordAction,
    Topic,
    decode,
    encode,
)

__all__ = ["WireClient", "write"]


class WireClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, *, login: dict[str, Any] | None = None) -> WireClient:
        """Open a socket; with ``login``, also do the challenge and log in with it."""
        client = cls(await connect(url, max_size=None, compression=None))
        if login is not None:
            await client.handshake()
            await client.login(login)
        return client

    async def handshake(self) -> None:
        await self.send(
            Message(
                Topic.CONNECTION,
                ConnectionAction.CHALLENGE,
                url="x",
                protocol_version="0.1a",
                sdk_version="test",
                sdk_type="wire",
            )
        )
        reply = await self.recv()
        assert (reply.topic, reply.action) == (Topic.CONNECTION, ConnectionAction.ACCEPT), reply

    async def login(self, auth: dict[str, Any]) -> Message:
        await self.send(Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps(auth)))
        reply = await self.recv()
        assert reply.action == AuthAction.AUTH_SUCCESSFUL, reply
        return reply

    async def send(self, msg: Message) -> None:
        await self.ws.send(encode(msg))

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = 2.0) -> Message:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(frame, bytes), frame
        return decode(frame, max_size=1 << 30)

    async def recv_until(self, topic: int, action: int, timeout: float = 2.0) -> Message:
        """Skip messages until one of ``topic``/``action`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg.topic == topic and msg.action == action:
                    return msg

    async def expect_silence(self, seconds: float = 0.2) -> None:
        """Assert nothing arrives within ``seconds``."""
        try:
            frame = await asyncio.wait_for(self.ws.recv(), seconds)
        except TimeoutError:
            return
        got = decode(frame, max_size=1 << 30) if isinstance(frame, bytes) else frame
        raise AssertionError(f"expected silence, got {got!r}")

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def write(name: str, data: Any, *, ack: str | None = None, version: int = -1) -> Message:
    """A forced write (version -1) that creates the record if missing; acked if ``ack``."""
    return Message(
        Topic.RECORD,
        RecordAction.CREATEANDUPDATE,
        name=name,
        version=version,
        data=json.dumps(data),
        correlation_id=ack,
        is_write_ack=True if ack is not None else None,
    )
