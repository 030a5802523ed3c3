"""A loopback HTTP proxy that lets the official ``elasticsearch`` client talk to osmem-server.

osmem-server (PyPI ``osmem-server``, an in-memory OpenSearch-compatible server) is the
Elasticsearch **stand-in** of these tests. The client sends compatibility media types
(``application/vnd.elasticsearch+json; compatible-with=9``) that osmem refuses with 406, and
refuses every answer without the ``X-Elastic-Product: Elasticsearch`` header that genuine
Elasticsearch sends. This proxy rewrites the media types of each request to the plain ones and
adds the header to each answer; nothing else is changed.

Run as ``python -m tests.standins.es_header_proxy TARGET_URL``: it listens on a free loopback
port, prints ``listening on PORT`` and exits when its standard input closes (its parent died).
"""

from __future__ import annotations

import asyncio
import re
import sys

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

__all__ = ["plain_media_type", "serve"]

_COMPATIBLE = re.compile(r"application/vnd\.elasticsearch\+([\w-]+)(\s*;\s*compatible-with=\d+)?")
# Connection-level headers: aiohttp sets its own for each side.
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def plain_media_type(value: str) -> str:
    """``application/vnd.elasticsearch+json; compatible-with=9`` -> ``application/json``."""
    return _COMPATIBLE.sub(r"application/\1", value)


def _request_headers(request: web.Request) -> dict[str, str]:
    headers = {}
    for key, value in request.headers.items():
        if key.lower() in _HOP_BY_HOP:
            continue
        if key.lower() in ("content-type", "accept"):
            value = plain_media_type(value)
        headers[key] = value
    return headers


async def serve(target: str, port: int = 0) -> tuple[web.AppRunner, int]:
    """Start the proxy to ``target`` (``http://host:port``); returns its runner and port."""
    session = ClientSession(
        connector=TCPConnector(limit=0),
        timeout=ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
    )

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with session.request(
            request.method,
            target + request.path_qs,
            headers=_request_headers(request),
            data=body if body else None,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            headers = {
                key: value
                for key, value in upstream.headers.items()
                if key.lower() not in _HOP_BY_HOP
            }
        headers["X-Elastic-Product"] = "Elasticsearch"
        return web.Response(status=upstream.status, body=payload, headers=headers)

    async def close_session(_: web.Application) -> None:
        await session.close()

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1])


async def _main(target: str) -> None:
    runner, port = await serve(target)
    print(f"listening on {port}", flush=True)
    loop = asyncio.get_running_loop()
    # Exit with the parent: its end of our standard input closes when it dies, even by SIGKILL.
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1].rstrip("/")))
