"""A real ``recordgate start`` process under hostile and unfinished HTTP traffic: every request
is answered or closed, and SIGTERM still stops it ("stopped", exit 0) in bounded time."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from gateway.protocol import Message, RpcAction, Topic
from tests.event_loop import start_args
from tests.gateway.httpapi.client import request
from tests.wire import WireClient

RECORDGATE = str(Path(sys.executable).parent / "recordgate")


async def _open(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def test_sigterm_stops_the_server_whatever_the_http_traffic(tmp_path: Path) -> None:
    config = tmp_path / "rg.yaml"
    config.write_text(
        "storage: {type: memory}\nrpc: {ack_timeout: 60, response_timeout: 60}\n"
        "http: {request_timeout: 60}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        RECORDGATE, "start", "-c", str(config), "--port", "0", "--host", "127.0.0.1",
        *start_args(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
        valid = request("/api", json.dumps({"body": [{"topic": "record", "action": "head",
                                                      "recordName": "a"}]}).encode())  # fmt: skip
        # Whole requests first: each is answered (a POST used to be closed without an answer).
        for _ in range(20):
            reader, writer = await _open(port, valid)
            answer = await asyncio.wait_for(reader.read(), 10)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            writer.close()
        # Then the traffic left hanging at SIGTERM.
        idle = [await _open(port, b"") for _ in range(10)]
        sniffing = [await _open(port, b"PO") for _ in range(10)]
        half_head = [await _open(port, b"POST /api HTTP/1.1\r\nContent-Le") for _ in range(10)]
        half_body = [
            await _open(port, valid[: valid.index(b"\r\n\r\n") + 4] + b'{"bo') for _ in range(10)
        ]
        half_ws = [await _open(port, b"GET /deepstream HTTP/1.1\r\nHost: x\r\n") for _ in range(10)]
        # requests being answered: an RPC its provider accepted and never answers
        provider = await WireClient.connect(f"ws://127.0.0.1:{port}/deepstream", login={})
        await provider.send(
            Message(Topic.RPC, RpcAction.PROVIDE, names=["slow"], correlation_id="p")
        )
        await provider.recv()
        make = {"body": [{"topic": "rpc", "action": "make", "rpcName": "slow"}]}
        in_flight = []
        for _ in range(5):
            in_flight.append(await _open(port, request("/api", json.dumps(make).encode())))
            msg = await provider.recv()
            await provider.send(
                Message(Topic.RPC, RpcAction.ACCEPT, name="slow", correlation_id=msg.correlation_id)
            )
        # a client that never reads what it is sent, with a large body refused at once
        unread = await _open(port, b"POST /api HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 30)
        elapsed = time.monotonic() - started
        err = (await proc.stderr.read()).decode()
        assert rc == 0, err
        assert "shutting down" in err and "stopped" in err, err
        assert elapsed < 15, elapsed
        # every request that was read was answered before the socket closed: the provider
        # went away with the server, so each RPC failed with the response timeout
        for reader, _ in in_flight:
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert json.loads(answer.partition(b"\r\n\r\n")[2])["result"] == "FAILURE"
        assert (await asyncio.wait_for(unread[0].read(), 5)).startswith(b"HTTP/1.1 413 ")
        for reader, writer in idle + sniffing + half_head + half_body + half_ws:
            await asyncio.wait_for(reader.read(), 5)  # the server closed it: the read ends
            writer.close()
        await provider.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
