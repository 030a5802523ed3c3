"""A raw HTTP/1.1 client over a real socket, for tests that must see exactly what is sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def exchange(
    port: int, raw: bytes, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` and read the answer until the server closes: status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}|{value.strip()}" if key in headers else value.strip()
    return int(lines[0].split()[1]), headers, body


def request(
    path: str, body: bytes, content_type: str | None = "application/json", **headers: str
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def post(port: int, document: Any, path: str = "/api") -> tuple[int, Any]:
    """POST ``document`` as JSON; the status and the parsed JSON answer (text if not JSON)."""
    status, headers, body = await exchange(port, request(path, json.dumps(document).encode()))
    if headers.get("content-type", "").startswith("application/json"):
        return status, json.loads(body)
    return status, body.decode()


async def ops(port: int, *operations: dict[str, Any], **extra: Any) -> Any:
    """Run ``operations`` in one request that must answer 200; its JSON answer."""
    status, answer = await post(port, {"body": list(operations), **extra})
    assert status == 200, answer
    return answer
