"""The batch write as one Lua script (``write.lua``): its arguments and its reply.

``WriteScript`` runs it with ``EVALSHA``, loading it when the server answers ``NOSCRIPT`` (a
restarted server, ``SCRIPT FLUSH``, a failover), so a batch is one round trip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any

from connectors._common import dump_json, load_json
from connectors.base import (
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
    WriteResult,
    collection_of,
    data_equal,
)
from connectors.redis.layout import Layout

__all__ = ["SHA", "SOURCE", "WriteScript", "arguments", "results", "snapshot", "version_of"]

SOURCE = files("connectors.redis").joinpath("write.lua").read_text(encoding="utf-8")
SHA = hashlib.sha1(SOURCE.encode()).hexdigest()


def arguments(
    layout: Layout, ops: Sequence[Put | Delete], updated_at: str
) -> tuple[list[bytes], list[str]]:
    """KEYS and ARGV of ``write.lua`` for ``ops``. Data that is not JSON, and a version that is
    not an integer, are ``StorageRejected`` here, before anything is sent."""
    keys = [layout.names, layout.collections]
    argv = [updated_at]
    record, collection = layout.record, layout.collection
    try:
        _add(ops, keys, argv, record, collection)
    except UnicodeEncodeError as exc:  # a lone surrogate: not text Redis (or JSON) can hold
        raise StorageRejected(f"a record name or its data is not valid Unicode: {exc}") from exc
    return keys, argv


def _add(
    ops: Sequence[Put | Delete],
    keys: list[bytes],
    argv: list[str],
    record: Callable[[str], bytes],
    collection: Callable[[str], bytes],
) -> None:
    for op in ops:
        name, version = op.name, op.version
        if type(version) is not int:
            raise StorageRejected(f"version of {name!r} must be an integer, got {version!r}")
        group = collection_of(name)
        keys += (record(name), collection(group))
        if isinstance(op, Delete):
            argv += ("D", name, group, str(version), "")
        else:
            argv += ("P", name, group, str(version), dump_json(op.data))


def results(
    ops: Sequence[Put | Delete], argv: Sequence[str], replies: Sequence[Any]
) -> list[WriteResult]:
    """One result per op from the script's reply: 0 for applied, else the stored snapshot.

    The script settles a same-version put as applied only when the JSON texts are identical;
    a stored text that differs but decodes to equal data (``data_equal``: keys in another
    order, written by another gateway or by hand) is an idempotent retry too, settled here.
    """
    if len(replies) != len(ops):
        raise StorageRejected(f"write script answered {len(replies)} results for {len(ops)} ops")
    out = []
    for index, (op, reply) in enumerate(zip(ops, replies, strict=True)):
        if reply == 0:
            out.append(WriteResult(op, Outcome.APPLIED))
            continue
        if not isinstance(reply, list) or len(reply) != 2:
            raise StorageRejected(f"record {op.name!r} is stored without a version or data")
        stored = snapshot(op.name, reply[0], reply[1])
        if (
            isinstance(op, Put)
            and stored.version == op.version
            and data_equal(stored.data, load_json(argv[5 + 5 * index]))
        ):
            out.append(WriteResult(op, Outcome.APPLIED))
        else:
            out.append(WriteResult(op, Outcome.CONFLICT, stored))
    return out


def version_of(name: str, version: bytes | str) -> int:
    """A stored version (decimal text; a data team may have edited it by hand)."""
    try:
        return int(version)
    except ValueError as exc:
        raise StorageRejected(f"record {name!r} holds an unreadable version: {exc}") from exc


def snapshot(name: str, version: bytes | str, data: bytes | str) -> Snapshot:
    """A stored snapshot from its hash fields (what a data team may have edited by hand)."""
    try:
        return Snapshot(name, version_of(name, version), json.loads(data))
    except ValueError as exc:  # also json.JSONDecodeError
        message = f"record {name!r} holds an unreadable version or data: {exc}"
        raise StorageRejected(message) from exc


class WriteScript:
    """``write.lua`` on one client: ``EVALSHA``, and ``SCRIPT LOAD`` on ``NOSCRIPT``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def load(self) -> None:
        sha = await self._client.script_load(SOURCE)
        if (sha.decode() if isinstance(sha, bytes) else sha) != SHA:
            raise StorageRejected("the server's SHA1 of the write script differs from ours")

    async def __call__(
        self, keys: list[bytes], argv: list[str], *, fsync_ms: int | None = None
    ) -> list[Any]:
        """The script's reply. With ``fsync_ms``, ``WAITAOF 1 0 fsync_ms`` follows it on the
        same connection (WAITAOF waits for the writes of its own connection), and a batch the
        server did not fsync in time is ``StorageTimeout``."""
        from redis.exceptions import NoScriptError

        for attempt in (1, 2):
            try:
                if fsync_ms is None:
                    return list(await self._client.evalsha(SHA, len(keys), *keys, *argv))
                return await self._call_and_wait(keys, argv, fsync_ms)
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.load()
        raise AssertionError("unreachable")

    async def _call_and_wait(self, keys: list[bytes], argv: list[str], fsync_ms: int) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.evalsha(SHA, len(keys), *keys, *argv)
            pipe.execute_command("WAITAOF", 1, 0, fsync_ms)
            reply, waited = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply  # NOSCRIPT (the caller loads the script), or translated by the guard
        if isinstance(waited, Exception):  # e.g. AOF turned off since open()
            raise StorageUnavailable(f"durability fsync: the server refused WAITAOF: {waited}")
        if int(waited[0]) < 1:
            raise StorageTimeout(f"redis did not fsync the batch within {fsync_ms} ms")
        return list(reply)
