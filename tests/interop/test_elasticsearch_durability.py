"""End to end with Elasticsearch storage: the official JS client writes with acknowledgements to
a real ``recordgate start`` whose storage is the Elasticsearch stand-in (osmem-server behind the
header proxy, not Elasticsearch; see ``tests/standins/elasticsearch.py``), recordgate is killed
with SIGKILL, and every acknowledged write is in the index (read with the raw reader's searches)
and is served again after a restart."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from connectors.elasticsearch import ElasticsearchConnector
from tests.faults.conftest import ServerProcess
from tests.interop.conftest import scenario_runner
from tests.standins.elasticsearch import require_elasticsearch

pytestmark = [pytest.mark.interop, pytest.mark.needs_server("elasticsearch")]

LONG = 60.0
"""A flush interval that never elapses during the test: only acknowledgements flush."""


async def test_acknowledged_writes_survive_sigkill_and_restart(node: str, tmp_path: Path) -> None:
    url = require_elasticsearch()
    index = f"e2e_{uuid.uuid4().hex[:12]}"
    config = tmp_path / "recordgate.yaml"
    config.write_text(
        "storage:\n"
        f"  type: elasticsearch\n  url: {url}\n  index: {index}\n  timeout: 10\n"
        f"write_behind:\n  interval: {LONG}\n"
    )
    server = await ServerProcess(config, tmp_path).start()
    read: dict[str, object] = {}
    try:
        written = await asyncio.to_thread(
            scenario_runner(node, server.url.removeprefix("ws://"), server.stderr),
            "durable_writes",
            "write",
            "doc",
            60,
        )
        acked = written["acked"]
        assert written["errors"] == [] and len(acked) == 61  # 60 records and the hot one
        await server.kill()  # SIGKILL: nothing flushes on the way out

        async with ElasticsearchConnector(url, index=index) as direct:
            reader = direct.raw_reader()
            try:
                stored = {name: await reader.read_raw(name) for name in acked}
            finally:
                await reader.close()
            for name, data in acked.items():
                row = stored[name]
                assert row is not None, f"acknowledged write of {name} is not in the index"
                assert row["data"] == data
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
            await direct.drop()
    finally:
        await server.kill()
    assert read["found"] == {
        name: {"data": data, "version": 10 if name == "doc-hot" else 1, "error": None}
        for name, data in acked.items()
    }
