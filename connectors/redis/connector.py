"""``RedisConnector``: records in Redis hashes, indexed by sorted sets (see ``layout.py``).

URLs: ``redis://[user:password@]host:6379/0``, ``rediss://...`` (TLS),
``unix:///path/redis.sock?db=0``. Options (strings accepted): ``prefix`` (key namespace,
default ``recordgate``), ``timeout`` (seconds per call, default 5), ``durability`` (``aof``, the
default, ``fsync`` or ``none``; see ``durability.py``), ``page_size`` (names per scan page,
default 500), ``max_connections`` (pool size, default 10).

A batch is one ``EVALSHA`` of ``write.lua``: checked and applied atomically by the server, one
round trip. A batch cut off by a lost connection or the timeout either ran whole or not at all;
the flusher sends it again, and a same-version put with equal data, or a delete of what is
gone, is applied again without change. Reads are plain ``HMGET``s, pipelined.

Fenced (capability ``fenced``): each name's highest applied fence is a key of its own in the
same hash slot (``layout.py``), checked and set by the same script as the write.

Connector instances are safe for concurrent use: each command takes a pooled connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from connectors._common import import_driver, option_float, option_int, prefix_upper_bound
from connectors.base import (
    CAPABILITY_FENCED,
    CAPABILITY_NETWORK,
    CAPABILITY_RAW,
    Delete,
    Put,
    RawReader,
    Snapshot,
    StorageError,
    StorageTimeout,
    StorageUnavailable,
    WriteResult,
)
from connectors.redis.durability import DURABILITY_LEVELS, check_durability
from connectors.redis.errors import guard
from connectors.redis.layout import DEFAULT_PREFIX, Layout, check_prefix
from connectors.redis.script import WriteScript, arguments, results, snapshot, version_of

__all__ = ["RedisConnector"]

log = logging.getLogger(__name__)

_SCHEMES = ("redis", "rediss", "unix")
_SETTLE_ROUNDS = 3


class RedisConnector:
    """Records in Redis; see the module docstring for URLs, options and guarantees."""

    name: ClassVar[str] = "redis"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAPABILITY_RAW, CAPABILITY_NETWORK, CAPABILITY_FENCED}
    )
    default_url: ClassVar[str] = "redis://127.0.0.1:6379/0"
    namespace_option: ClassVar[str] = "prefix"
    """The option that isolates one store from another; the conformance suite varies it."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | str = 5.0,
        durability: str = "aof",
        page_size: int | str = 500,
        max_connections: int | str = 10,
    ) -> None:
        import_driver("redis.asyncio", "redis")  # a missing driver: one line naming the extra
        scheme = urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise ValueError(f"redis URL must start with redis://, rediss:// or unix://: {url!r}")
        if durability not in DURABILITY_LEVELS:
            raise ValueError(f"option 'durability' must be one of {', '.join(DURABILITY_LEVELS)}")
        self.url = url
        self.prefix = check_prefix(prefix)
        self.timeout = option_float(timeout, "timeout")
        self.durability = durability
        self.page_size = option_int(page_size, "page_size")
        self.max_connections = option_int(max_connections, "max_connections")
        if self.timeout <= 0 or self.page_size < 1 or self.max_connections < 1:
            raise ValueError("options 'timeout', 'page_size' and 'max_connections' must be > 0")
        self._layout = Layout(self.prefix)
        self._client: Any = None
        self._script: WriteScript | None = None
        self._fsync_ms: int | None = None  # WAITAOF per batch, with this timeout (durability fsync)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        client = _client(self.url, self.timeout, self.max_connections)
        script = WriteScript(client)
        try:
            async with guard(f"open {self._where()}", self.timeout):
                await client.ping()
                waitaof = await check_durability(client, self.durability, self._where())
                await script.load()
        except BaseException:
            await client.aclose(close_connection_pool=True)
            raise
        self._client, self._script = client, script
        self._fsync_ms = max(1, int(self.timeout * 1000)) if waitaof else None

    async def close(self) -> None:
        """Release the connections: bounded by the timeout (a frozen server cannot hold it) and
        never failing (whatever is left is the operating system's to close)."""
        client, self._client, self._script = self._client, None, None
        if client is None:
            return
        try:
            async with guard("close", self.timeout):
                await client.aclose(close_connection_pool=True)
        except StorageError as exc:
            log.warning("redis connector: close did not finish cleanly: %s", exc)

    async def __aenter__(self) -> RedisConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Delete every key of this store's prefix (tests and the conformance suite). Each
        ``SCAN`` step and each ``UNLINK`` is bounded by the timeout, not the whole walk."""
        client = self._open_client()
        cursor: int | None = None
        while cursor != 0:
            async with guard("drop", self.timeout):
                cursor, keys = await client.scan(
                    cursor or 0, match=self._layout.pattern, count=1000
                )
                if keys:
                    await client.unlink(*keys)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, name: str) -> Snapshot | None:
        client = self._open_client()
        async with guard("get", self.timeout):
            version, data = await client.hmget(self._layout.record(name), "version", "data")
        return None if version is None or data is None else snapshot(name, version, data)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        async with guard("get", self.timeout):
            return await self._read(wanted)

    async def head(self, name: str) -> int | None:
        client = self._open_client()
        async with guard("head", self.timeout):
            version = await client.hget(self._layout.record(name), "version")
        return None if version is None else version_of(name, version)

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        """Names from the ``names`` index by ``ZRANGEBYLEX`` in pages, then their hashes. A
        record written or deleted during the scan may or may not be seen; every other record
        is yielded once, in name order."""
        client = self._open_client()
        upper = prefix_upper_bound(prefix)
        low = b"[" + prefix.encode() if prefix else b"-"
        high = b"(" + upper.encode() if upper is not None else b"+"
        while True:
            async with guard("scan", self.timeout):
                page = await client.zrangebylex(
                    self._layout.names, low, high, start=0, num=self.page_size
                )
                if not page:
                    return
                names = [raw.decode() for raw in page]
                found = await self._read(names)
            for name in names:
                if name in found:
                    yield found[name]
            if len(page) < self.page_size:
                return
            low = b"(" + page[-1]

    # -- writes ----------------------------------------------------------------------------

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        self._open_client()
        if not ops:
            return []
        assert self._script is not None
        stamp = datetime.now(UTC).isoformat(timespec="microseconds")
        keys, argv = arguments(self._layout, ops, stamp)  # rejects bad data before any I/O
        async with guard(f"write of {len(ops)} operations", self.timeout):
            replies = await self._script(keys, argv, fsync_ms=self._fsync_ms)
            out, again = results(ops, argv, replies)
            for _ in range(_SETTLE_ROUNDS):
                if not again:
                    break
                # Fenced same-version retries whose stored text differs from ours (equal data):
                # sent again as the stored text, so the script raises their fence.
                indexes = list(again)
                sent = [ops[i] for i in indexes]
                keys, argv = arguments(self._layout, sent, stamp, [again[i] for i in indexes])
                replies = await self._script(keys, argv, fsync_ms=self._fsync_ms)
                settled, again_sent = results(sent, argv, replies)
                for i, result in zip(indexes, settled, strict=True):
                    out[i] = result
                again = {indexes[j]: text for j, text in again_sent.items()}
        if again:
            raise StorageTimeout(
                f"{len(again)} fenced retries kept meeting new data of equal value; try again"
            )
        return [result for result in out if result is not None]

    # -- raw layout ------------------------------------------------------------------------

    def raw_reader(self) -> RawReader:
        from connectors.redis.raw import RedisRawReader

        return RedisRawReader(self.url, self.prefix, self.timeout)

    # -- helpers ---------------------------------------------------------------------------

    def _open_client(self) -> Any:
        if self._client is None:
            raise StorageUnavailable("redis connector is not open")
        return self._client

    async def _read(self, names: list[str]) -> dict[str, Snapshot]:
        record = self._layout.record
        async with self._open_client().pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(record(name), "version", "data")
            rows = await pipe.execute()
        return {
            name: snapshot(name, version, data)
            for name, (version, data) in zip(names, rows, strict=True)
            if version is not None and data is not None
        }

    def _where(self) -> str:
        """The URL without its password, for logs and errors."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def _client(url: str, timeout: float, max_connections: int) -> Any:
    """A redis-py asyncio client with every network wait bounded by ``timeout``.

    Its pool makes a command wait (within the timeout) for a free connection when all
    ``max_connections`` are busy; redis-py's default pool fails it at once ("Too many
    connections"), which would fail record loads when many clients open records together. A
    command whose pooled connection turned out dead (a restarted server) is retried once, at
    once, on a new connection.
    """
    aioredis = import_driver("redis.asyncio", "redis")
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return aioredis.Redis(connection_pool=pool)
