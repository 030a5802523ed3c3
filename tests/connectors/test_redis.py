"""The Redis connector against real ``redis-server`` processes of the test's own (AOF on unless
a test says otherwise): durability checks at open, the key layout a data team reads with
``redis-cli``, exact versions beyond 2^53, atomic batches, errors and timeouts from a server that
stops answering, and a server killed mid-load losing no acknowledged write.

The whole conformance suite runs against Redis in ``tests/conformance/test_suite_runs.py``.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Delete, Outcome, Put, Snapshot
from connectors.redis import DATA_TEAM_COMMANDS, RedisConnector
from gateway.config import WriteBehindConfig
from gateway.exceptions import ConfigError, StorageRejected, StorageTimeout, StorageUnavailable
from gateway.store import CachedStore, Record
from tests.redis_server import RedisServer, redis_server, valkey_server_binary

__all__ = ["redis_server"]  # the fixture, used by name


def _prefix() -> str:
    return f"rgtest_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisConnector]:
    async with RedisConnector(redis_server.url, prefix=_prefix(), timeout=2) as connector:
        yield connector


async def _raw(server: RedisServer) -> Any:
    from redis.asyncio import Redis

    return Redis.from_url(server.url)


# -- durability at open ------------------------------------------------------------------------


async def test_open_refuses_a_server_without_aof(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=False).start()
    try:
        connector = RedisConnector(server.url, prefix=_prefix())
        with pytest.raises(StorageUnavailable, match=r"appendonly no.*durability: none"):
            await connector.open()
        await connector.close()
    finally:
        server.kill()


async def test_durability_none_opens_without_aof_and_says_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, appendonly=False).start()
    try:
        with caplog.at_level(logging.WARNING, logger="connectors.redis"):
            async with RedisConnector(server.url, prefix=_prefix(), durability="none") as c:
                [result] = await c.write([Put("a/1", 1, {"x": 1})])
                assert result.ok
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "durability=none" in warning.getMessage()
        assert "appendonly no" in warning.getMessage()
    finally:
        server.kill()


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "no aof"])
async def test_with_config_disabled_info_persistence_decides(
    tmp_path: Path, appendonly: bool
) -> None:
    # Managed Redis services disable CONFIG; the connector asks INFO persistence instead.
    server = RedisServer(tmp_path, appendonly=appendonly, **{"rename-command": ("CONFIG", '""')})
    server.start()
    try:
        connector = RedisConnector(server.url, prefix=_prefix())
        if appendonly:
            async with connector:
                assert (await connector.write([Put("a", 1, {})]))[0].ok
        else:
            with pytest.raises(StorageUnavailable, match="appendonly no"):
                await connector.open()
            await connector.close()
    finally:
        server.kill()


async def test_open_refuses_a_server_that_evicts_keys(tmp_path: Path) -> None:
    # An allkeys-* policy would silently drop stored records when memory runs out.
    server = RedisServer(tmp_path, **{"maxmemory-policy": "allkeys-lru"}).start()
    try:
        connector = RedisConnector(server.url, prefix=_prefix())
        with pytest.raises(StorageUnavailable, match="maxmemory-policy allkeys-lru"):
            await connector.open()
        await connector.close()
    finally:
        server.kill()
    server = RedisServer(tmp_path / "ok", **{"maxmemory-policy": "volatile-lru"}).start()
    try:
        async with RedisConnector(server.url, prefix=_prefix()) as connector:
            assert (await connector.write([Put("a", 1, {})]))[0].ok
    finally:
        server.kill()


async def test_fsync_durability_with_appendfsync_always(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendfsync="always").start()
    try:
        async with RedisConnector(server.url, prefix=_prefix(), durability="fsync") as c:
            assert (await c.write([Put("a", 1, {"x": 1})]))[0].ok
            assert await c.get("a") == Snapshot("a", 1, {"x": 1})
    finally:
        server.kill()


async def test_fsync_durability_with_appendfsync_everysec_needs_waitaof(
    redis_server: RedisServer,
) -> None:
    raw = await _raw(redis_server)
    try:
        version = (await raw.info("server"))["redis_version"]
        has_waitaof = tuple(int(p) for p in version.split(".")[:2]) >= (7, 2)
        connector = RedisConnector(redis_server.url, prefix=_prefix(), durability="fsync")
        if not has_waitaof:  # Debian 12's Redis 7.0 here
            with pytest.raises(StorageUnavailable, match=r"appendfsync always.*WAITAOF"):
                await connector.open()
            await connector.close()
            return
        async with connector:
            before = await raw.info("commandstats")
            assert (await connector.write([Put("a", 1, {})]))[0].ok
            after = await raw.info("commandstats")
            calls = after["cmdstat_waitaof"]["calls"]
            assert calls == before.get("cmdstat_waitaof", {"calls": 0})["calls"] + 1
    finally:
        await raw.aclose()


async def test_fsync_durability_waits_for_waitaof_after_every_batch(tmp_path: Path) -> None:
    # Valkey 8 (a server with WAITAOF) at appendfsync everysec: every batch is followed, on the
    # script's connection, by WAITAOF 1 0 (fsynced locally) before write returns.
    server = RedisServer(tmp_path, binary=valkey_server_binary()).start()
    raw = await _raw(server)
    try:
        async with RedisConnector(server.url, prefix=_prefix(), durability="fsync") as c:
            for version in (1, 2, 3):
                assert (await c.write([Put("a", version, {"v": version}), Put("b", 1, {})]))[0].ok
            stats = await raw.info("commandstats")
            assert stats["cmdstat_waitaof"]["calls"] == 3 + 1  # + the probe at open()
            assert stats["cmdstat_evalsha"]["calls"] == 3
            # AOF switched off behind the connector's back: the batch is applied in memory, but
            # not acknowledged as durable; the retry after AOF is back is the idempotent one.
            await raw.config_set("appendonly", "no")
            with pytest.raises(StorageUnavailable, match="WAITAOF"):
                await c.write([Put("a", 4, {"v": 4})])
            await raw.config_set("appendonly", "yes")
            async with asyncio.timeout(10):
                while (await raw.info("persistence"))["aof_rewrite_in_progress"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert (await c.write([Put("a", 4, {"v": 4})]))[0].ok
    finally:
        await raw.aclose()
        server.kill()


def test_options_are_checked_before_any_io() -> None:
    with pytest.raises(ValueError, match="durability"):
        RedisConnector("redis://127.0.0.1:1/0", durability="maybe")
    with pytest.raises(ValueError, match="prefix"):
        RedisConnector("redis://127.0.0.1:1/0", prefix="a}b")
    with pytest.raises(ValueError, match="redis://"):
        RedisConnector("http://127.0.0.1:1/0")


def test_a_missing_driver_is_one_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'recordgate\[redis\]'"):
        RedisConnector("redis://127.0.0.1:1/0")


# -- layout ------------------------------------------------------------------------------------

AWKWARD_NAMES = [
    "user/a:b:c",
    "user/{tag}",
    "user/}{",
    "user/with spaces ",
    "user/ユーザー🙂",
    "user/" + "long" * 150,  # 605 bytes
    "no-collection",
    "/leading",
]


async def test_keys_hold_names_verbatim_under_one_hash_tag(
    redis_server: RedisServer, store: RedisConnector
) -> None:
    await store.write([Put(name, 1, {"n": name}) for name in AWKWARD_NAMES])
    raw = await _raw(redis_server)
    tag = "{" + store.prefix + "}"
    try:
        keys = {key async for key in raw.scan_iter(match=f"{tag}:*")}
        record_keys = {f"{tag}:record:{n}".encode() for n in AWKWARD_NAMES}
        assert keys == record_keys | {
            f"{tag}:names".encode(),
            f"{tag}:collections".encode(),
            f"{tag}:collection:user".encode(),
            f"{tag}:collection:_default".encode(),
        }
        # Every key's cluster hash tag is the prefix, whatever braces the name holds.
        assert all(key.startswith(tag.encode() + b":") for key in keys)
        fields = await raw.hgetall(f"{tag}:record:user/{{tag}}")
        assert fields[b"name"] == b"user/{tag}" and fields[b"collection"] == b"user"
        assert fields[b"version"] == b"1" and fields[b"data"] == b'{"n":"user/{tag}"}'
        users = sorted(n for n in AWKWARD_NAMES if n.startswith("user/"))
        members = await raw.zrangebylex(f"{tag}:collection:user", "-", "+")
        assert [m.decode() for m in members] == users  # name (code point) order
        names = await raw.zrangebylex(f"{tag}:names", "-", "+")
        assert [m.decode() for m in names] == sorted(AWKWARD_NAMES)
        assert await raw.zrange(f"{tag}:collections", 0, -1) == [b"_default", b"user"]
        assert {s async for s in raw.zscan_iter(f"{tag}:names")} == {
            (n.encode(), 0.0) for n in AWKWARD_NAMES
        }
    finally:
        await raw.aclose()


async def test_deletes_leave_no_index_entries_behind(
    redis_server: RedisServer, store: RedisConnector
) -> None:
    await store.write([Put("a/1", 1, {}), Put("a/2", 1, {}), Put("b/1", 1, {})])
    results = await store.write([Delete("a/1", 1), Delete("a/2", 5), Delete("b/1", 1)])
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 3
    raw = await _raw(redis_server)
    tag = "{" + store.prefix + "}"
    try:
        assert [key async for key in raw.scan_iter(match=f"{tag}:*")] == []
    finally:
        await raw.aclose()
    await store.write([Put("a/1", 1, {"again": True})])  # created again from version 1
    assert await store.get("a/1") == Snapshot("a/1", 1, {"again": True})


async def test_the_data_team_commands_run_verbatim(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        async with RedisConnector(server.url) as connector:  # the default prefix
            await connector.write(
                [
                    Put("user/42", 3, {"name": "Ada", "age": 36}),
                    Put("user/7", 1, {"name": "Bob", "age": 25}),
                    Put("user/100", 2, {"name": "Cy", "age": 31}),
                    Put("other/1", 1, {"age": 99}),
                ]
            )

        def run(command: str) -> list[str]:
            words = shlex.split(command)
            assert words[0] == "redis-cli"
            done = subprocess.run(
                [words[0], "-p", str(server.port), *words[1:]],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            return done.stdout.splitlines()

        assert run(DATA_TEAM_COMMANDS["list a collection"]) == ["user/100", "user/42", "user/7"]
        fields = run(DATA_TEAM_COMMANDS["read a record"])
        assert dict(zip(fields[::2], fields[1::2], strict=True)) == {
            "name": "user/42",
            "collection": "user",
            "version": "3",
            "data": '{"name":"Ada","age":36}',
            "updated_at": fields[fields.index("updated_at") + 1],
        }
        assert run(DATA_TEAM_COMMANDS["query record fields"]) == ["user/100", "user/42"]
    finally:
        server.kill()


# -- versions, atomicity, scripts --------------------------------------------------------------


async def test_versions_beyond_2_53_stay_exact(store: RedisConnector) -> None:
    # As Lua numbers (doubles) 2^53 and 2^53 + 1 are equal: the script must not compare those.
    big = 2**53
    assert (await store.write([Put("v", big, {"v": 0})]))[0].ok
    assert (await store.write([Put("v", big + 1, {"v": 1})]))[0].ok
    [same_version_other_data] = await store.write([Put("v", big + 1, {"v": 2})])
    assert same_version_other_data.outcome is Outcome.CONFLICT
    assert same_version_other_data.current == Snapshot("v", big + 1, {"v": 1})
    [stale] = await store.write([Put("v", big, {"v": 3})])
    assert stale.outcome is Outcome.CONFLICT
    [stale_delete] = await store.write([Delete("v", big)])
    assert stale_delete.outcome is Outcome.CONFLICT
    huge = 10**30  # longer than any double's exact digits
    assert (await store.write([Put("v", huge, {"v": 4})]))[0].ok
    assert (await store.write([Put("v", huge + 1, {"v": 5})]))[0].ok
    assert await store.head("v") == huge + 1
    assert (await store.write([Put("v", huge, {"v": 6})]))[0].outcome is Outcome.CONFLICT
    assert (await store.write([Put("v", 99, {"v": 7})]))[0].outcome is Outcome.CONFLICT
    assert (await store.write([Delete("v", huge + 1)]))[0].ok
    assert await store.get("v") is None


async def test_a_key_of_another_type_rejects_the_batch_having_written_nothing(
    redis_server: RedisServer, store: RedisConnector
) -> None:
    raw = await _raw(redis_server)
    tag = "{" + store.prefix + "}"
    try:
        await raw.set(f"{tag}:record:c/bad", "not a hash")  # e.g. a hand-made key
        with pytest.raises(StorageRejected, match="WRONGTYPE"):
            await store.write([Put("a/1", 1, {}), Put("c/bad", 1, {}), Put("d/1", 1, {})])
        assert await store.get_many(["a/1", "d/1"]) == {}
        assert await raw.exists(f"{tag}:names", f"{tag}:collection:a") == 0
        await raw.set(f"{tag}:collection:e", "not a sorted set")
        with pytest.raises(StorageRejected, match="WRONGTYPE"):
            await store.write([Put("a/1", 1, {}), Put("e/1", 1, {})])
        assert await store.get("a/1") is None
    finally:
        await raw.aclose()


async def test_script_reloaded_after_script_flush(
    redis_server: RedisServer, store: RedisConnector
) -> None:
    raw = await _raw(redis_server)
    try:
        await raw.script_flush()
    finally:
        await raw.aclose()
    assert (await store.write([Put("a", 1, {})]))[0].ok


async def test_a_name_that_is_not_unicode_text_is_rejected(store: RedisConnector) -> None:
    with pytest.raises(StorageRejected):
        await store.write([Put("ok", 1, {}), Put("bad\ud800", 1, {})])
    assert await store.get("ok") is None


# -- a server that stops answering, or dies --------------------------------------------------

TIMEOUT = 1.0
SLACK = 3.0


async def test_a_server_that_stops_answering_times_out(redis_server: RedisServer) -> None:
    assert redis_server.process is not None
    connector = RedisConnector(redis_server.url, prefix=_prefix(), timeout=TIMEOUT)
    await connector.open()
    late = RedisConnector(redis_server.url, prefix=_prefix(), timeout=TIMEOUT)
    redis_server.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        for call in (
            lambda: connector.write([Put("a", 1, {})]),
            lambda: connector.get("a"),
            lambda: connector.get_many(["a", "b"]),
            lambda: connector.head("a"),
            lambda: anext(aiter(connector.scan(""))),
            late.open,
        ):
            started = time.monotonic()
            with pytest.raises(StorageTimeout):
                async with asyncio.timeout(TIMEOUT + SLACK):  # only detects a hang
                    await call()
            assert time.monotonic() - started < TIMEOUT + SLACK
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    # The timed-out connections were dropped, not reused with a late reply in them.
    assert (await connector.write([Put("b", 1, {"b": 1})]))[0].ok
    assert await connector.get("b") == Snapshot("b", 1, {"b": 1})
    await connector.close()
    await late.close()


async def test_a_server_killed_mid_load_loses_no_acknowledged_write(
    redis_server: RedisServer,
) -> None:
    prefix = _prefix()
    connector = RedisConnector(redis_server.url, prefix=prefix, timeout=TIMEOUT)
    settings = WriteBehindConfig(interval=0.02, batch_size=50, retry_initial=0.02, retry_max=0.2)
    store = CachedStore(connector, write_behind=settings)
    await store.open()
    acknowledged: dict[str, int] = {}
    failures: list[BaseException] = []

    async def writer(worker: int) -> None:
        for version in range(1, 10_000):
            name = f"load/{worker}"
            store.put(Record(name, version, {"w": worker, "v": version}))
            try:
                await store.durable(name, version)
            except Exception as exc:  # an ack turned into an error is allowed, never a loss
                failures.append(exc)
                return
            acknowledged[name] = version
            await asyncio.sleep(0)

    writers = [asyncio.create_task(writer(i)) for i in range(20)]
    try:
        while sum(acknowledged.values()) < 400:  # noqa: ASYNC110 - the load runs meanwhile
            await asyncio.sleep(0.01)
        redis_server.kill()  # mid-load: batches are in flight
        at_kill = dict(acknowledged)
        await asyncio.sleep(0.5)  # writes keep coming; the flusher retries
        redis_server.start()
        async with asyncio.timeout(20):  # the flusher did not hang: acks resume
            while any(acknowledged.get(n, 0) <= v for n, v in at_kill.items()):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
    assert store.stats.retried > 0, "the kill never hit a flush"
    assert failures == []
    final = dict(acknowledged)
    await store.close()
    redis_server.kill()  # and once more: what was acknowledged is in the AOF
    redis_server.start()
    reader = RedisConnector(redis_server.url, prefix=prefix, timeout=5)
    async with reader:
        stored = await reader.get_many(final)
    for name, version in final.items():
        assert stored[name].version >= version, name
        assert stored[name].data == {"w": int(name.split("/")[1]), "v": stored[name].version}


async def test_more_concurrent_calls_than_connections_wait_their_turn(
    redis_server: RedisServer,
) -> None:
    # Many clients opening records at once: every load must succeed, not "Too many connections".
    async with RedisConnector(redis_server.url, prefix=_prefix(), max_connections=2) as c:
        await c.write([Put(f"r/{i}", 1, {"i": i}) for i in range(50)])
        found = await asyncio.gather(*(c.get(f"r/{i}") for i in range(50)))
        assert found == [Snapshot(f"r/{i}", 1, {"i": i}) for i in range(50)]
        results = await asyncio.gather(*(c.write([Put(f"w/{i}", 1, {})]) for i in range(20)))
        assert all(r.ok for [r] in results)


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "redis", unixsocket=str(socket_path)).start()
    try:
        url = f"unix://{socket_path}?db=0"
        async with RedisConnector(url, prefix=_prefix()) as connector:
            assert (await connector.write([Put("a/1", 1, {"via": "socket"})]))[0].ok
            assert await connector.get("a/1") == Snapshot("a/1", 1, {"via": "socket"})
            reader = connector.raw_reader()
            try:
                assert await reader.count_raw("a/") == 1
            finally:
                await reader.close()
    finally:
        server.kill()


async def test_passwords_stay_out_of_errors(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, requirepass="right-secret").start()
    try:
        wrong = f"redis://:wrong-secret@127.0.0.1:{server.port}/0"
        connector = RedisConnector(wrong, prefix=_prefix(), timeout=2)
        with pytest.raises(StorageUnavailable) as caught:
            await connector.open()
        await connector.close()
        assert "wrong-secret" not in str(caught.value)
        right = f"redis://:right-secret@127.0.0.1:{server.port}/0"
        async with RedisConnector(right, prefix=_prefix()) as connector:
            assert (await connector.write([Put("a", 1, {})]))[0].ok
    finally:
        server.kill()


async def test_a_refused_record_fails_alone_in_the_flusher(redis_server: RedisServer) -> None:
    # WRONGTYPE refuses the whole script (nothing written); the flusher then writes the batch
    # record by record, so only the record under the hand-made key fails its writer.
    prefix = _prefix()
    raw = await _raw(redis_server)
    try:
        await raw.set(f"{{{prefix}}}:record:c/bad", "not a hash")
    finally:
        await raw.aclose()
    connector = RedisConnector(redis_server.url, prefix=prefix, timeout=2)
    store = CachedStore(connector, write_behind=WriteBehindConfig(interval=3600))
    await store.open()
    try:
        for name in ("a/1", "c/bad", "d/1"):
            store.put(Record(name, 1, {"n": name}))
        await store.durable("a/1", 1)
        await store.durable("d/1", 1)
        with pytest.raises(StorageRejected):
            await store.durable("c/bad", 1)
        assert store.stats.failed == 1
    finally:
        await store.close()
    async with RedisConnector(redis_server.url, prefix=prefix) as reader:
        assert set(await reader.get_many(["a/1", "d/1"])) == {"a/1", "d/1"}
        with pytest.raises(StorageRejected, match="WRONGTYPE"):  # still not ours to read
            await reader.get("c/bad")
