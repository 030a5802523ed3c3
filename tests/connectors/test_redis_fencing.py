"""Fencing in the Redis connector, where the conformance suite cannot look: the fence keys and
tombstones of the stored layout, what ``redis-cli`` shows a data team, fences beyond 2^53, a
retry whose stored text differs from its own, hand-broken fence keys, and fences surviving a
SIGKILLed server. The rules themselves: ``conformance/test_fencing.py``.
"""

from __future__ import annotations

import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Delete, Outcome, Put, Snapshot
from connectors.redis import DATA_TEAM_COMMANDS, RedisConnector
from gateway.exceptions import StorageRejected
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, used by name


def _prefix() -> str:
    return f"rgfence_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisConnector]:
    async with RedisConnector(redis_server.url, prefix=_prefix(), timeout=5) as connector:
        yield connector


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _tag(store: RedisConnector) -> str:
    return "{" + store.prefix + "}"


async def test_fences_and_tombstones_are_keys_of_their_own(store: RedisConnector, raw: Any) -> None:
    tag = _tag(store)
    [put] = await store.write([Put("user/42", 3, {"age": 36}, fence=7)])
    assert put.ok
    assert await raw.get(f"{tag}:fence:user/42") == b"7"
    assert b"fence" not in await raw.hkeys(f"{tag}:record:user/42"), "the hash is unchanged"
    # A fenced delete keeps the fence as a tombstone: no hash, no index entry.
    [gone, never] = await store.write([Delete("user/42", 3, fence=9), Delete("user/7", 1, fence=4)])
    assert gone.ok and never.ok
    assert await raw.get(f"{tag}:fence:user/42") == b"9"
    assert await raw.get(f"{tag}:fence:user/7") == b"4"
    assert await raw.exists(f"{tag}:record:user/42", f"{tag}:record:user/7") == 0
    assert await raw.zrange(f"{tag}:names", 0, -1) == []
    assert await raw.exists(f"{tag}:collection:user", f"{tag}:collections") == 0
    assert await store.get("user/42") is None and await store.head("user/7") is None
    assert [s async for s in store.scan()] == []
    reader = store.raw_reader()
    try:
        assert await reader.read_raw("user/42") is None
        assert await reader.count_raw() == 0
    finally:
        await reader.close()
    # Unfenced writes never touch a fence key.
    assert (await store.write([Put("user/42", 1, {"back": True})]))[0].ok
    assert await raw.get(f"{tag}:fence:user/42") == b"9"
    assert (await store.write([Delete("user/42", 1)]))[0].ok
    assert await raw.get(f"{tag}:fence:user/42") == b"9"
    assert await raw.exists(f"{tag}:fence:plain") == 0
    assert (await store.write([Put("plain", 1, {})]))[0].ok
    assert await raw.exists(f"{tag}:fence:plain") == 0
    # drop() removes the fence keys with everything else.
    await store.drop()
    assert await raw.keys(f"{tag}:*") == []


async def test_a_data_team_sees_no_tombstones(
    store: RedisConnector, redis_server: RedisServer
) -> None:
    # The documented redis-cli commands, run verbatim (on the default prefix) against a store
    # holding live records and tombstones of the same collection.
    async with RedisConnector(redis_server.url, timeout=5) as default:
        try:
            await default.write(
                [
                    Put("user/42", 3, {"name": "Ada", "age": 36}, fence=2),
                    Put("user/100", 1, {"age": 31}),
                    Put("user/7", 2, {"age": 12}, fence=5),
                    Put("user/8", 2, {"age": 50}, fence=5),
                ]
            )
            await default.write([Delete("user/8", 2, fence=6), Delete("user/9", 1, fence=1)])

            def run(command: str) -> list[str]:
                argv = shlex.split(command)
                argv[1:1] = ["-p", str(redis_server.port)]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
                return done.stdout.splitlines()

            assert run(DATA_TEAM_COMMANDS["list a collection"]) == ["user/100", "user/42", "user/7"]
            assert run(DATA_TEAM_COMMANDS["query record fields"]) == ["user/100", "user/42"]
            # As docs/connectors.md shows it: the fence of a name, live or deleted.
            assert run("redis-cli GET '{recordgate}:fence:user/42'") == ["2"]
            assert run("redis-cli GET '{recordgate}:fence:user/8'") == ["6"]
        finally:
            await default.drop()


async def test_fences_beyond_2_53_stay_exact(store: RedisConnector, raw: Any) -> None:
    # As doubles 2^53 and 2^53 + 1 are equal: the script must compare fences as digits.
    big = 2**53
    assert (await store.write([Put("f", 1, {}, fence=big + 1)]))[0].ok
    [refused] = await store.write([Put("f", 2, {}, fence=big)])
    assert refused.outcome is Outcome.FENCED and refused.fence == big + 1
    assert refused.current == Snapshot("f", 1, {})
    top = 2**63 - 1
    assert (await store.write([Delete("f", 1, fence=top)]))[0].ok
    assert await raw.get(f"{_tag(store)}:fence:f") == str(top).encode()
    [refused] = await store.write([Put("f", 5, {}, fence=top - 1)])
    assert (refused.outcome, refused.fence, refused.current) == (Outcome.FENCED, top, None)
    assert (await store.write([Put("f", 5, {}, fence=top)]))[0].ok


@pytest.mark.parametrize("fence", [-1, 2**63, 1.0, "3", True])
async def test_a_fence_outside_0_to_2_63_is_rejected_before_anything_is_written(
    store: RedisConnector, fence: Any
) -> None:
    with pytest.raises(StorageRejected, match="fence"):
        await store.write([Put("ok", 1, {}), Delete("bad", 1, fence=fence)])
    assert await store.get("ok") is None


async def test_a_fenced_retry_of_equal_data_in_another_text_raises_the_fence(
    store: RedisConnector, raw: Any
) -> None:
    # The stored JSON text differs from the retry's (another key order: another gateway, or by
    # hand): the script sees different texts, the connector equal data, and must still raise
    # the fence, in the same atomic way.
    tag = _tag(store)
    assert (await store.write([Put("r", 4, {"a": 1, "b": [1, 2]}, fence=5)]))[0].ok
    await raw.hset(f"{tag}:record:r", "data", '{ "b": [1, 2], "a": 1 }')
    stamp = await raw.hget(f"{tag}:record:r", "updated_at")
    [retry] = await store.write([Put("r", 4, {"a": 1, "b": [1, 2]}, fence=9)])
    assert retry.outcome is Outcome.APPLIED
    assert await raw.get(f"{tag}:fence:r") == b"9"
    # An idempotent retry changes nothing else stored: not the text, not the timestamp.
    assert await raw.hget(f"{tag}:record:r", "data") == b'{ "b": [1, 2], "a": 1 }'
    assert await raw.hget(f"{tag}:record:r", "updated_at") == stamp
    [stale] = await store.write([Put("r", 5, {"a": 2}, fence=8)])
    assert stale.outcome is Outcome.FENCED and stale.fence == 9
    # Not equal data (1 is not 1.0): a conflict, fence unchanged.
    [other] = await store.write([Put("r", 4, {"a": 1.0, "b": [1, 2]}, fence=12)])
    assert other.outcome is Outcome.CONFLICT
    assert await raw.get(f"{tag}:fence:r") == b"9"


async def test_a_fence_key_that_is_not_a_number_rejects_the_batch_having_written_nothing(
    store: RedisConnector, raw: Any
) -> None:
    tag = _tag(store)
    await raw.set(f"{tag}:fence:c/bad", "1e3")  # e.g. edited by hand
    with pytest.raises(StorageRejected, match="fence"):
        await store.write([Put("a/1", 1, {}, fence=1), Put("c/bad", 1, {}, fence=2)])
    assert await store.get("a/1") is None
    assert await raw.exists(f"{tag}:fence:a/1") == 0
    # An unfenced write does not read the fence key, so it is not in the way.
    assert (await store.write([Put("c/bad", 1, {})]))[0].ok


async def test_fences_and_tombstones_survive_a_sigkilled_server(tmp_path: Path) -> None:
    # appendfsync always: with everysec (the default) Redis 7.0 answers a write whose AOF
    # write() it postponed while a background fsync runs (up to 2 s), so SIGKILL right after
    # can lose an acknowledged write of any kind, fenced or not (2 of 30 runs here). That is
    # the server's setting's gap, not the fence's; here the fence must be in the same commit.
    redis_server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    try:
        await _fences_survive(redis_server)
    finally:
        redis_server.kill()


async def _fences_survive(redis_server: RedisServer) -> None:
    prefix = _prefix()
    async with RedisConnector(redis_server.url, prefix=prefix, timeout=5) as connector:
        assert (await connector.write([Put("k/live", 2, {"x": 1}, fence=11)]))[0].ok
        assert (await connector.write([Delete("k/dead", 4, fence=12)]))[0].ok
    redis_server.kill()  # SIGKILL: what was acknowledged must be in the AOF
    redis_server.start()
    async with RedisConnector(redis_server.url, prefix=prefix, timeout=5) as connector:
        assert await connector.get("k/live") == Snapshot("k/live", 2, {"x": 1})
        [live, dead] = await connector.write(
            [Put("k/live", 3, {}, fence=10), Put("k/dead", 1, {}, fence=11)]
        )
        assert (live.outcome, live.fence) == (Outcome.FENCED, 11)
        assert (dead.outcome, dead.fence, dead.current) == (Outcome.FENCED, 12, None)
        assert await connector.get("k/dead") is None
