"""The whole conformance suite passes for every bundled connector, against real databases."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.base import CAPABILITY_FENCED
from connectors.registry import load_connector_class
from tests.conformance.runner import SuiteRun, run_suite
from tests.redis_server import RedisServer, valkey_server_binary
from tests.servers import require_mariadb, require_mariadb_socket, require_postgres
from tests.standins.mongodb import MongoStandin

SUITE = "conformance/"


def _assert_passed(run_args: tuple[str, ...], output: str, returncode: int) -> None:
    assert returncode == 0, f"suite failed for {run_args}:\n{output[-6000:]}"


def _assert_skipped(run: SuiteRun, connector: str, expected: int) -> None:
    """``expected`` skips besides the fencing tests, which run exactly when the connector
    declares the "fenced" capability (and are skipped, every one, when it does not)."""
    fencing = run.skipped_lacking(CAPABILITY_FENCED)
    if CAPABILITY_FENCED in load_connector_class(connector).capabilities:
        assert fencing == 0, f"{connector}: {fencing} fencing tests skipped"
    else:
        assert fencing >= 10, f"{connector} is not fenced, yet its fencing tests ran"
    assert run.count("skipped") - fencing == expected, run.output[-3000:]


def test_memory() -> None:
    run = run_suite(SUITE, "--connector", "memory")
    _assert_passed(("memory",), run.output, run.returncode)
    assert run.count("passed") > 60
    assert run.failed_tests == []
    _assert_skipped(run, "memory", 3)  # the three network tests: no server


def test_sql_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'conformance.db'}"
    run = run_suite(SUITE, "--connector", "sql", "--connector-url", url)
    _assert_passed(("sqlite",), run.output, run.returncode)
    assert run.count("passed") > 60
    _assert_skipped(run, "sql", 3)  # only the three network tests: SQLite has no server


@pytest.mark.parametrize(
    "server",
    [require_postgres, require_mariadb, require_mariadb_socket],
    # Through the socket, the network tests aim the connector at TCP servers of their own (url_for)
    # and the proxy at the socket (server_address).
    ids=["postgresql", "mariadb", "mariadb unix socket"],
)
def test_sql_server(server: Callable[[], str]) -> None:
    url = server()
    table = f"rg_suite_{uuid.uuid4().hex[:10]}"
    try:
        run = run_suite(SUITE, "--connector", "sql", "--connector-url", url,
                        "--connector-option", f"table={table}")  # fmt: skip
    finally:
        asyncio.run(_drop_table(url, table))
    _assert_passed((url,), run.output, run.returncode)
    assert run.count("passed") > 60
    _assert_skipped(run, "sql", 0)  # the network tests run too


@pytest.mark.parametrize("durability", ["aof", "fsync"], ids=["redis aof", "valkey fsync"])
def test_redis(tmp_path: Path, durability: str) -> None:
    # A server of the test's own with AOF on, so the connector runs with its default durability
    # (the shared test Redis runs without AOF, which the connector refuses): Debian's
    # redis-server, and for durability fsync (WAITAOF after every batch) Valkey 8.
    binary = valkey_server_binary() if durability == "fsync" else None
    # fsync: every batch waits (WAITAOF) for the server's next fsync of the AOF, which under
    # appendfsync everysec it attempts at every cron tick (1/hz: 100 ms by default), and the
    # suite writes about 2,000 batches one after another. So the server ticks at its fastest
    # (hz 500) and keeps its files in memory (/dev/shm) if it can: what is tested is that the
    # connector waits for the fsync, not how fast a disk is.
    shm = Path("/dev/shm")
    directory = tmp_path
    settings: dict[str, str] = {}
    if durability == "fsync":
        settings["hz"] = "500"
        if shm.is_dir() and os.access(shm, os.W_OK):
            directory = Path(tempfile.mkdtemp(prefix="recordgate-valkey-", dir=shm))
    server = RedisServer(directory / "server", binary=binary, **settings).start()
    try:
        run = run_suite(SUITE, "--connector", "redis", "--connector-url", server.url,
                        "--connector-option", f"durability={durability}")  # fmt: skip
        _assert_passed(("redis", durability), run.output, run.returncode)
        assert run.count("passed") > 60
        _assert_skipped(run, "redis", 0)  # the network tests run too
        assert server.ping()
    finally:
        server.kill()
        if directory != tmp_path:
            shutil.rmtree(directory, ignore_errors=True)


async def _drop_table(url: str, table: str) -> None:
    from connectors.sql import SQLConnector

    async with SQLConnector(url, table=table) as connector:
        await connector.drop()


@pytest.mark.parametrize("spec", ["memory", "connectors.memory:MemoryConnector"])
def test_connector_spec_forms(spec: str) -> None:
    run = run_suite(SUITE + "test_versioning.py", f"--connector={spec}")
    _assert_passed((spec,), run.output, run.returncode)


def test_unknown_connector_is_a_usage_error() -> None:
    run = run_suite(SUITE + "test_versioning.py", "--connector", "no-such-connector")
    assert run.returncode != 0
    assert "no storage connector named 'no-such-connector'" in run.output


@pytest.mark.needs_server("rethinkdb")
@pytest.mark.timeout(600)  # the whole suite in a subprocess: about a minute, more under load
def test_rethinkdb_against_the_reqlite_standin() -> None:
    """RethinkDB through reqlite, a stand-in (not RethinkDB): skips only for its listed gaps."""
    from tests.standins.reqlite_gaps import GAPS
    from tests.standins.rethinkdb import reqlite_url

    url = reqlite_url("rg_suite")
    table = f"rg_suite_{uuid.uuid4().hex[:10]}"
    try:
        # The stand-in runs queries one at a time (tests/standins/reqlite/serve.js), so the
        # suite's 164 concurrent calls queue behind each other: a generous per-call timeout, as
        # for the other stand-ins (the suite's timeout tests set their own).
        run = run_suite(SUITE, "--connector", "rethinkdb", "--connector-url", url,
                        "--connector-option", f"table={table}",
                        "--connector-option", "timeout=20",
                        "-p", "tests.standins.reqlite_gaps", timeout=580)  # fmt: skip
    finally:
        asyncio.run(_drop_rethinkdb_table(url, table))
    _assert_passed((url,), run.output, run.returncode)
    assert run.count("passed") > 60
    _assert_skipped(run, "rethinkdb", len(GAPS))
    assert "stand-in gap: " in run.output


async def _drop_rethinkdb_table(url: str, table: str) -> None:
    from connectors.rethinkdb import RethinkDBConnector

    async with RethinkDBConnector(url, table=table) as connector:
        await connector.drop()


@pytest.mark.needs_server("mongodb stand-in")
@pytest.mark.timeout(900)  # about two minutes on a loaded machine: the stand-in is slow
def test_mongodb_against_the_standin(mongodb_standin: MongoStandin) -> None:
    # NX-27017, a MongoDB wire-protocol stand-in (no genuine MongoDB here): see docs/connectors.md.
    # A generous per-call timeout for the stand-in's slow big documents under load (the suite's
    # timeout tests set their own).
    run = run_suite(SUITE, "--connector", "mongodb",
                    "--connector-url", mongodb_standin.url("rg_conformance"),
                    "--connector-option", "timeout=20", timeout=900)  # fmt: skip
    _assert_passed(("mongodb stand-in",), run.output, run.returncode)
    assert run.count("passed") > 60
    _assert_skipped(run, "mongodb", 0)  # no stand-in gap needs a skip


@pytest.mark.needs_server("elasticsearch")
def test_elasticsearch() -> None:
    # Against the Elasticsearch stand-in (osmem-server behind the header proxy, see
    # tests/standins/elasticsearch.py) unless RECORDGATE_ELASTICSEARCH_URL names a cluster. The
    # suite picks a fresh index (the connector's namespace option) and deletes it at the end.
    from tests.standins.elasticsearch import require_elasticsearch

    url = require_elasticsearch()
    # A generous per-call timeout: the stand-in takes seconds for the suite's 1 MB document on
    # a loaded machine (the suite's timeout tests set their own). Below the plugin's own bound
    # on a call (30 s), so a slow call fails as the connector's StorageTimeout, not as a hang.
    run = run_suite(SUITE, "--connector", "elasticsearch", "--connector-url", url,
                    "--connector-option", "timeout=20", timeout=900)  # fmt: skip
    _assert_passed(("elasticsearch",), run.output, run.returncode)
    assert run.count("passed") > 60
    _assert_skipped(run, "elasticsearch", 0)  # no stand-in gap costs a test of the suite
