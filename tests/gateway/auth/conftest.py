"""A real HTTP endpoint on loopback for the http strategy: it records each request and
answers from a script of ``(status, body, delay)`` entries (the last one repeats)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio


@dataclass
class Endpoint:
    url: str
    answers: list[tuple[int, Any, float]] = field(default_factory=lambda: [(200, "", 0.0)])
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    state = Endpoint("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            state.requests.append({"line": lines[0], "headers": headers, "json": json.loads(body)})
            index = min(len(state.requests), len(state.answers)) - 1
            status, answer, delay = state.answers[index]
            await asyncio.sleep(delay)
            data = (
                answer
                if isinstance(answer, bytes)
                else (answer.encode() if isinstance(answer, str) else json.dumps(answer).encode())
            )
            kind = "text/plain" if isinstance(answer, str | bytes) else "application/json"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/auth"
    async with server:
        yield state
