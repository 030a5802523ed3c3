"""End to end with MongoDB storage: the official JS client writes with acknowledgements to a
real ``recordgate start`` whose storage is the NX-27017 MongoDB **stand-in** (not MongoDB),
recordgate is killed with SIGKILL, and every acknowledged write is in the database (read through
PyMongo) and is served again after a restart."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from connectors.mongodb import MongoConnector
from tests.faults.conftest import ServerProcess
from tests.interop.conftest import scenario_runner
from tests.standins.mongodb import MongoStandin

pytestmark = [pytest.mark.interop, pytest.mark.needs_server("mongodb stand-in")]

LONG = 60.0
"""A flush interval that never elapses during the test: only acknowledgements flush."""


async def test_acknowledged_writes_survive_sigkill_and_restart(
    node: str, tmp_path: Path, mongodb_standin: MongoStandin
) -> None:
    url = mongodb_standin.url(f"e2e_{uuid.uuid4().hex[:10]}")
    config = tmp_path / "recordgate.yaml"
    config.write_text(
        f"storage:\n  type: mongodb\n  url: {url}\n  timeout: 2\n"
        f"write_behind:\n  interval: {LONG}\n"
    )
    server = await ServerProcess(config, tmp_path).start()
    address = server.url.removeprefix("ws://")
    try:
        written = await asyncio.to_thread(
            scenario_runner(node, address, server.stderr), "durable_writes", "write", "doc", 60
        )
        acked = written["acked"]
        assert written["errors"] == [] and len(acked) == 61  # 60 records and the hot one
        await server.kill()  # SIGKILL: nothing flushes on the way out

        async with MongoConnector(url) as direct:
            reader = direct.raw_reader()
            try:
                stored = {name: await reader.read_raw(name) for name in acked}
            finally:
                await reader.close()
            for name, data in acked.items():
                document = stored[name]
                assert document is not None, f"acknowledged write of {name} is not in MongoDB"
                assert document["data"] == data
                assert document["collection"] == ("doc" if name != "doc-hot" else "_default")
            assert stored["doc-hot"]["version"] == 10  # type: ignore[index]

            restarted = await ServerProcess(config, tmp_path).start()
            try:
                read = await asyncio.to_thread(
                    scenario_runner(node, restarted.url.removeprefix("ws://"), restarted.stderr),
                    "durable_writes",
                    "read",
                    "doc",
                    60,
                )
            finally:
                await restarted.kill()
            await direct.collection.database.client.drop_database(direct.settings.database)
    finally:
        await server.kill()
    assert read["found"] == {
        name: {"data": data, "version": 10 if name == "doc-hot" else 1, "error": None}
        for name, data in acked.items()
    }
