"""What an acknowledged write means on Redis, checked when the connector opens.

Redis answers a write from memory. With the append-only file on (``appendonly yes``) it has
written the command to the AOF before it answers, so the write survives the Redis process being
killed; it reaches the disk when the AOF is fsynced: before the answer with ``appendfsync
always``, within about a second with ``everysec`` (the default). The ``durability`` option:

* ``aof`` (default): the server must have AOF on; acknowledged writes survive a killed or
  restarted Redis, as SQLite's ``synchronous: normal`` survives a killed process.
* ``fsync``: also survive an operating-system crash or power loss: the server must run
  ``appendfsync always``, or support ``WAITAOF`` (Redis 7.2+), which every batch then waits
  for (``WAITAOF 1 0 <timeout>``: fsynced locally).
* ``none``: the operator accepts that acknowledged writes live only in Redis's memory (lost if
  Redis stops); logged as a warning at every open.

The server's settings are read with ``CONFIG GET``; managed services that disable ``CONFIG``
(ElastiCache, MemoryDB, ...) are asked ``INFO persistence`` (``aof_enabled``) instead, and
since it does not show ``appendfsync``, ``fsync`` then relies on ``WAITAOF``. A server that
answers neither is refused unless ``durability: none``.

Whatever the level, a server that evicts any key when full (``maxmemory-policy allkeys-*``)
could drop stored records, so it is refused too (a warning with ``durability: none``).
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.base import StorageUnavailable

__all__ = ["DURABILITY_LEVELS", "check_durability"]

log = logging.getLogger(__name__)

DURABILITY_LEVELS = ("aof", "fsync", "none")


async def check_durability(client: Any, level: str, where: str) -> bool:
    """Check that the server keeps writes as ``level`` promises; raise ``StorageUnavailable``
    naming the setting and the option if not. True means: wait with ``WAITAOF`` per batch."""
    eviction = await _eviction_policy(client)
    if eviction.startswith("allkeys-"):
        message = (
            f"redis at {where} evicts keys when full (maxmemory-policy {eviction}): stored "
            "records could vanish. Use noeviction (or a volatile-* policy: records never "
            "expire, so it never evicts them)"
        )
        if level != "none":
            raise StorageUnavailable(message)
        log.warning("storage redis: durability=none: %s", message)
    config = await _config(client)
    aof: bool | None
    if config is not None:
        aof, fsync = config.get("appendonly") == "yes", config.get("appendfsync", "")
    else:
        aof, fsync = await _info_aof(client), ""
    if level == "none":
        if not aof:
            log.warning(
                "storage redis at %s: durability=none: the server %s, so acknowledged writes "
                "live only in its memory and are lost if Redis stops",
                where,
                "has no append-only file (appendonly no)"
                if aof is False
                else "hides its persistence settings (CONFIG and INFO refused)",
            )
        return False
    if aof is None:
        raise StorageUnavailable(
            f"redis at {where} refuses both CONFIG GET and INFO persistence, so its persistence "
            "cannot be checked; set the storage option durability: none to accept the risk"
        )
    if not aof:
        raise StorageUnavailable(
            f"redis at {where} runs without an append-only file (appendonly no): acknowledged "
            "writes would be lost when Redis stops. Turn it on (CONFIG SET appendonly yes, and "
            "in redis.conf), or set the storage option durability: none to accept the risk"
        )
    if level == "aof" or fsync == "always":
        return False
    if await _has_waitaof(client):
        return True
    raise StorageUnavailable(
        f"redis at {where}: durability: fsync needs appendfsync always (it is "
        f"{fsync or 'unknown: CONFIG refused'}) or a server with WAITAOF (Redis 7.2+)"
    )


async def _config(client: Any) -> dict[str, str] | None:
    """``appendonly`` and ``appendfsync``, or ``None`` if ``CONFIG`` is refused."""
    from redis.exceptions import ResponseError

    try:
        found = await client.config_get("append*")
    except ResponseError:  # unknown or renamed command, NOPERM
        return None
    return {_text(k): _text(v) for k, v in found.items()}


async def _eviction_policy(client: Any) -> str:
    """``maxmemory_policy`` from ``INFO memory`` (which managed services answer too); empty
    if refused."""
    from redis.exceptions import ResponseError

    try:
        info = await client.info("memory")
    except ResponseError:
        return ""
    return str(info.get("maxmemory_policy", ""))


async def _info_aof(client: Any) -> bool | None:
    """``aof_enabled`` from ``INFO persistence``, or ``None`` if refused or absent."""
    from redis.exceptions import ResponseError

    try:
        info = await client.info("persistence")
    except ResponseError:
        return None
    flag = info.get("aof_enabled")
    return None if flag is None else str(flag) == "1"


async def _has_waitaof(client: Any) -> bool:
    """Whether the server knows ``WAITAOF``: asked for nothing (0 local, 0 replicas), it
    answers at once; an older server answers "unknown command"."""
    from redis.exceptions import ResponseError

    try:
        await client.execute_command("WAITAOF", 0, 0, 1)
    except ResponseError:
        return False
    return True


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
