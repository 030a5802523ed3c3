"""``conflict_policy: storage-wins`` with the official JS client, on a recordgate of the test's
own (SQLite): a write dropped for a newer version in storage is an error to ``setWithAck`` and
to a ``set`` callback, never a success; the client then gets storage's version."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Put
from connectors.sql import SQLConnector
from tests.interop.conftest import HERE, RecordgateProcess

pytestmark = pytest.mark.interop


async def _behind_the_back(db: Path, names: list[str]) -> None:
    """Another writer (a data team, another server) stores version 5 of each record."""
    async with SQLConnector(f"sqlite+aiosqlite:///{db}") as other:
        results = await other.write([Put(name, 5, {"a": "theirs"}) for name in names])
        assert all(r.ok for r in results), results


async def _stored(db: Path, name: str) -> tuple[int, Any] | None:
    async with SQLConnector(f"sqlite+aiosqlite:///{db}") as connector:
        snapshot = await connector.get(name)
    return None if snapshot is None else (snapshot.version, snapshot.data)


def test_storage_wins_fails_the_acknowledgement_of_a_dropped_write(
    node: str, tmp_path: Path
) -> None:
    if os.environ.get("RECORDGATE_INTEROP_URL"):
        pytest.skip("writes into its own recordgate's SQLite file")
    server = RecordgateProcess(tmp_path)
    server.config.write_text(
        server.config.read_text() + "write_behind:\n  conflict_policy: storage-wins\n"
    )
    server.start()
    client = subprocess.Popen(
        [node, str(HERE / "scenarios" / "conflict_ack.js"), server.url],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    db = tmp_path / "recordgate-data" / "records.db"
    try:
        line = client.stdout.readline().split()
        assert line[:1] == ["CHANGE-ROWS"], [*line, client.stdout.read()]
        asyncio.run(_behind_the_back(db, line[1:]))
        client.stdin.write("go\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
        server.stop()
    assert client.returncode == 0, f"{out}\n{err}\n{server.log.read_text()}"
    r = json.loads(out.strip().splitlines()[-1])
    assert r["before"] == [{"ok": None}, {"ok": None}]
    assert r["promised"] == {"error": "RECORD_UPDATE_ERROR"}  # setWithAck rejects
    assert r["called"] == "RECORD_UPDATE_ERROR"  # the callback gets the error
    assert r["adopted"] == [{"a": "theirs"}, {"a": "theirs"}]
    assert r["after"] == {"ok": None}
    assert r["server"] == {"ok": {"a": 3}} and r["head"] == {"ok": 6}
    assert asyncio.run(_stored(db, r["names"][0])) == (6, {"a": 3})
    assert asyncio.run(_stored(db, r["names"][1])) == (5, {"a": "theirs"})
