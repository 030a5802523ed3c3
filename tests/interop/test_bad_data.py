"""Unstorable data against the official JS client, on a recordgate of the test's own (SQLite):
lone surrogates are refused with an error the client reports, the record stays readable and
writable; raw frames with numbers beyond a double, NaN, or too deep are refused; a stored record
holding such a number is answered with an error, never with non-JSON that would crash the
client; no frame the server sends carries ``Infinity`` or ``NaN``."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.protocol import EventAction, Message, RecordAction, Topic
from tests.interop.conftest import HERE, RecordgateProcess
from tests.wire import WireClient

pytestmark = pytest.mark.interop
R = RecordAction

RAW = ['{"a":1e400}', '{"a":-1e400}', '{"a":NaN}', '{"a":Infinity}', "[" * 200 + "]" * 200]
RAW += ['{"a":"\\ud800"}']


def _raw_writes(name: str) -> list[Message]:
    return [
        Message(Topic.RECORD, R.CREATEANDUPDATE, name=name, version=-1, data=data) for data in RAW
    ] + [Message(Topic.RECORD, R.PATCH, name=name, version=-1, path="a", data="1e400")]


async def _hostile_peer(url: str, name: str, stored: str, db: Path) -> list[Message]:
    """Sends the raw frames, puts 1e999 into ``stored`` behind the server's back, and returns
    every message it received (it stays subscribed to both records)."""
    peer = await WireClient.connect(f"ws://{url}", login={})
    got: list[Message] = []
    await peer.send(Message(Topic.RECORD, R.SUBSCRIBE, names=[name, stored], correlation_id="s"))
    got.append(await peer.recv())
    for msg in _raw_writes(name):
        await peer.send(msg)
        got.append(await peer.recv())
    with sqlite3.connect(db) as sql:
        sql.execute(
            "UPDATE records SET data = ?, version = version + 1 WHERE name = ?",
            ('{"n":1e999}', stored),
        )
    await peer.send(Message(Topic.RECORD, R.NOTIFY, names=[stored], correlation_id="n"))
    got.append(await peer.recv_until(Topic.RECORD, R.NOTIFY))
    await peer.send(Message(Topic.RECORD, R.READ, name=stored))
    got.append(await peer.recv())
    # Event data is forwarded as sent, and the official client JSON.parses it unguarded: one
    # of these would kill every subscribed Node process. Each is refused; the good one passes.
    for data in ("NaN", "{", "Infinity", "undefined", "[1,]"):
        await peer.send(Message(Topic.EVENT, EventAction.EMIT, name=name, data=data))
        got.append(await peer.recv())
    await peer.send(Message(Topic.EVENT, EventAction.EMIT, name=name, data='"fine"'))
    return got


def test_unstorable_data_never_reaches_or_crashes_the_official_client(
    node: str, tmp_path: Path
) -> None:
    if os.environ.get("RECORDGATE_INTEROP_URL"):
        pytest.skip("edits its own recordgate's SQLite file; not possible against another server")
    server = RecordgateProcess(tmp_path)
    server.start()
    client = subprocess.Popen(
        [node, str(HERE / "scenarios" / "bad_data.js"), server.url],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        line = client.stdout.readline().split()
        assert line[:1] == ["BAD-DATA"], [*line, client.stdout.read()]
        name, stored = line[1], line[2]
        db = tmp_path / "recordgate-data" / "records.db"
        got = asyncio.run(_hostile_peer(server.url, name, stored, db))
        client.stdin.write("go\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
        server.stop()
    assert client.returncode == 0, f"{out}\n{err}\n{server.log.read_text()}"
    r: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert r["first"] == {"ok": None}
    for key in ("surrogateWhole", "surrogatePath", "surrogateKey", "surrogateName"):
        assert r[key] == {"error": "INVALID_MESSAGE_DATA"}, (key, r)
    assert r["afterRefusals"] == {"ok": {"ok": 1}}  # nothing of them reached the record
    assert r["second"] == {"ok": None}
    assert r["reread"] == {"ok": 2}
    assert r["final"] == {"ok": {"ok": 2}}
    assert r["storedSnapshot"] == {"error": "RECORD_LOAD_ERROR"}
    assert r["storedRecordData"] == "not ready"
    assert all(e["event"] != "MESSAGE_PARSE_ERROR" for e in r["errors"]), r["errors"]

    # The raw peer: each bad frame refused, and nothing anyone received is non-JSON.
    assert r["events"] == ["fine"]  # alive, and only the good event arrived
    records = [m for m in got if m.topic == Topic.RECORD]
    refusals = [m for m in records if m.action == R.INVALID_MESSAGE_DATA]
    assert len(refusals) == len(RAW) + 1
    assert records[-1].action == R.RECORD_LOAD_ERROR
    events = [m for m in got if m.topic == Topic.EVENT]
    assert [m.action for m in events] == [EventAction.INVALID_MESSAGE_DATA] * 5
    for msg in got:
        if msg.data is not None:
            json.loads(msg.data, parse_constant=_not_json)
    assert "Traceback" not in server.log.read_text()


def _not_json(constant: str) -> None:
    pytest.fail(f"the server sent {constant}, which is not JSON")
