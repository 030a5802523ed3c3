"""The batch write as one Lua script (``write.lua``): its arguments and its reply.

``WriteScript`` runs it with ``EVALSHA``, loading it when the server answers ``NOSCRIPT`` (a
restarted server, ``SCRIPT FLUSH``, a failover), so a batch is one round trip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
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

__all__ = [
    "MAX_FENCE",
    "SHA",
    "SOURCE",
    "WriteScript",
    "arguments",
    "results",
    "snapshot",
    "version_of",
]

SOURCE = files("connectors.redis").joinpath("write.lua").read_text(encoding="utf-8")
SHA = hashlib.sha1(SOURCE.encode()).hexdigest()


MAX_FENCE = 2**63 - 1

ARGS_PER_OP = 6
"""kind, name, collection, version, data, fence (see ``write.lua``)."""


def arguments(
    layout: Layout,
    ops: Sequence[Put | Delete],
    updated_at: str,
    texts: Sequence[str] | None = None,
) -> tuple[list[bytes], list[str]]:
    """KEYS and ARGV of ``write.lua`` for ``ops`` (with ``texts``: the puts' data as these JSON
    texts, one per op, verbatim). Data that is not JSON, a version that is not an integer, and
    a fence that is not an integer in ``0 .. 2**63 - 1``, are ``StorageRejected`` here, before
    anything is sent."""
    keys = [layout.names, layout.collections]
    argv = [updated_at]
    try:
        _add(ops, keys, argv, layout, texts)
    except UnicodeEncodeError as exc:  # a lone surrogate: not text Redis (or JSON) can hold
        raise StorageRejected(f"a record name or its data is not valid Unicode: {exc}") from exc
    return keys, argv


def _add(
    ops: Sequence[Put | Delete],
    keys: list[bytes],
    argv: list[str],
    layout: Layout,
    texts: Sequence[str] | None,
) -> None:
    record, collection, fence_key = layout.record, layout.collection, layout.fence
    for index, op in enumerate(ops):
        name, version, fence = op.name, op.version, op.fence
        if type(version) is not int:
            raise StorageRejected(f"version of {name!r} must be an integer, got {version!r}")
        if fence is not None and (type(fence) is not int or not 0 <= fence <= MAX_FENCE):
            raise StorageRejected(f"fence of {name!r} must be an integer 0..2**63-1: {fence!r}")
        group = collection_of(name)
        keys += (record(name), collection(group), fence_key(name))
        fenced = "" if fence is None else str(fence)
        if isinstance(op, Delete):
            argv += ("D", name, group, str(version), "", fenced)
        else:
            text = dump_json(op.data) if texts is None else texts[index]
            argv += ("P", name, group, str(version), text, fenced)


def results(
    ops: Sequence[Put | Delete], argv: Sequence[str], replies: Sequence[Any]
) -> tuple[list[WriteResult | None], dict[int, str]]:
    """One result per op from the script's reply (see ``write.lua``), and the fenced puts to
    send again (by index, with the text to send).

    The script settles a same-version put as applied only when the JSON texts are identical;
    a stored text that differs but decodes to equal data (``data_equal``: keys in another
    order, written by another gateway or by hand) is an idempotent retry too, settled here.
    Such a retry of a fenced put must still raise the stored fence, which the script did not
    do: its result is ``None``, and the caller sends it again with the stored text itself
    (equal data) for the script to settle it as an identical retry, raising the fence.
    """
    if len(replies) != len(ops):
        raise StorageRejected(f"write script answered {len(replies)} results for {len(ops)} ops")
    out: list[WriteResult | None] = []
    again: dict[int, str] = {}
    for index, (op, reply) in enumerate(zip(ops, replies, strict=True)):
        if reply == 0:
            out.append(WriteResult(op, Outcome.APPLIED))
            continue
        kind = reply[0] if isinstance(reply, list) and reply else None
        if kind == b"F" and len(reply) in (2, 4):
            stored = snapshot(op.name, reply[2], reply[3]) if len(reply) == 4 else None
            fence = version_of(op.name, reply[1])
            out.append(WriteResult(op, Outcome.FENCED, stored, fence=fence))
            continue
        if kind != b"C" or len(reply) != 3:
            raise StorageRejected(f"record {op.name!r} is stored without a version or data")
        stored = snapshot(op.name, reply[1], reply[2])
        if not (
            isinstance(op, Put)
            and stored.version == op.version
            and data_equal(stored.data, load_json(argv[5 + ARGS_PER_OP * index]))
        ):
            out.append(WriteResult(op, Outcome.CONFLICT, stored))
        elif op.fence is None:
            out.append(WriteResult(op, Outcome.APPLIED))
        else:
            out.append(None)
            again[index] = text_of(op.name, reply[2])
    return out, again


def text_of(name: str, text: bytes | str) -> str:
    """A stored JSON text as ``str``."""
    try:
        return text if isinstance(text, str) else text.decode()
    except UnicodeDecodeError as exc:
        raise StorageRejected(f"record {name!r} holds data that is not UTF-8: {exc}") from exc


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
