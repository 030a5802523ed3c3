"""Record names holding U+0000 with the official JS client, on a recordgate over PostgreSQL
(which declares it cannot hold U+0000): snapshot, has, head and setDataWithAck naming such a
record are answered at once with INVALID_MESSAGE_DATA, which the client routes to that call, and
the client keeps working. getRecord of such a name never becomes ready (the client drops that
error), rather than becoming ready as an empty record."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from connectors.sql import SQLConnector
from tests.interop.conftest import HERE, SERVER_CONFIG, RecordgateProcess
from tests.servers import require_postgres

pytestmark = pytest.mark.interop


def test_calls_naming_a_record_postgresql_cannot_hold_are_answered(
    node: str, tmp_path: Path
) -> None:
    url = require_postgres()
    table = f"interop_nul_{uuid.uuid4().hex[:10]}"
    server = RecordgateProcess(tmp_path)
    server.config.write_text(
        SERVER_CONFIG + f"storage:\n  type: sql\n  url: {url}\n  table: {table}\n"
    )
    server.start()
    try:
        done = subprocess.run(
            [node, str(HERE / "scenarios" / "nul_names.js"), server.url],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
        asyncio.run(_drop(url, table))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log.read_text()}"
    r = json.loads(done.stdout.strip().splitlines()[-1])
    for call in ("setWithAck", "snapshot", "has", "head"):
        assert r[call] == {"error": "INVALID_MESSAGE_DATA"}, (call, r)
    # getRecord: the client ignores INVALID_MESSAGE_DATA on a record (record-core.js handles only
    # permission and update errors there), so it never becomes ready; above all, never ready as an
    # empty record the user would then write to. (Its read timeout reports it later.)
    assert r["ready"] == {"error": "NO ANSWER"}, r
    assert r["after"] == {"ok": {"a": 2}}, r
    assert "Traceback" not in server.log.read_text()


async def _drop(url: str, table: str) -> None:
    async with SQLConnector(url, table=table) as connector:
        await connector.drop()
