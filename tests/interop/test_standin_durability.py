"""End to end on the backends tested against stand-ins (MongoDB: NX-27017, Elasticsearch:
osmem-server behind the header proxy, RethinkDB: reqlite; none is the genuine database): the
official JS client writes with acknowledgements to a real ``recordgate start``, recordgate is
killed with SIGKILL, and every acknowledged write is in the database (read through its raw
reader) and is served again after a restart. SQLite and Redis run the same scenario in
``test_durability.py``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.base import Connector, SupportsRawReader
from tests.faults.conftest import ServerProcess
from tests.interop.conftest import scenario_runner

pytestmark = pytest.mark.interop

LONG = 60.0
"""A flush interval that never elapses during the test: only acknowledgements flush."""


@dataclass(frozen=True)
class Backend:
    storage: dict[str, Any]
    """The ``storage:`` section (type, url, options)."""
    drop: Callable[[Connector], Awaitable[None]]


def _backend(kind: str, request: pytest.FixtureRequest) -> Backend:
    unique = f"e2e_{uuid.uuid4().hex[:10]}"
    if kind == "mongodb":
        url = request.getfixturevalue("mongodb_standin").url(unique)

        async def drop_database(connector: Any) -> None:
            await connector.collection.database.client.drop_database(connector.settings.database)

        return Backend({"type": "mongodb", "url": url, "timeout": 2}, drop_database)
    if kind == "elasticsearch":
        from tests.standins.elasticsearch import require_elasticsearch

        url = require_elasticsearch()
        return Backend(
            {"type": "elasticsearch", "url": url, "index": unique, "timeout": 10},
            lambda connector: connector.drop(),  # type: ignore[attr-defined]
        )
    from tests.standins.rethinkdb import reqlite_url

    storage = {"type": "rethinkdb", "url": reqlite_url(), "table": unique, "timeout": 2}
    return Backend(storage, lambda connector: connector.drop())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("mongodb", marks=pytest.mark.needs_server("mongodb stand-in")),
        pytest.param("elasticsearch", marks=pytest.mark.needs_server("elasticsearch")),
        pytest.param("rethinkdb", marks=pytest.mark.needs_server("rethinkdb")),
    ],
)
async def test_acknowledged_writes_survive_sigkill_and_restart(
    kind: str, node: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from connectors.registry import create_connector

    backend = _backend(kind, request)
    config = tmp_path / "recordgate.yaml"
    config.write_text(
        yaml.safe_dump({"storage": backend.storage, "write_behind": {"interval": LONG}})
    )
    server = await ServerProcess(config, tmp_path).start()
    read: dict[str, Any] = {}
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

        options = {k: v for k, v in backend.storage.items() if k not in ("type", "url")}
        async with create_connector(kind, backend.storage["url"], **options) as direct:
            assert isinstance(direct, SupportsRawReader)
            reader = direct.raw_reader()
            try:
                stored = {name: await reader.read_raw(name) for name in acked}
            finally:
                await reader.close()
            for name, data in acked.items():
                row = stored[name]
                assert row is not None, f"acknowledged write of {name} is not in {kind}"
                assert row["data"] == data
                assert row["collection"] == ("_default" if name == "doc-hot" else "doc")
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
            await backend.drop(direct)
    finally:
        await server.kill()
    assert read["found"] == {
        name: {"data": data, "version": 10 if name == "doc-hot" else 1, "error": None}
        for name, data in acked.items()
    }
