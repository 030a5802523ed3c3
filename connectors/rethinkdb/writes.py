"""Conditional batch writes: one ReQL query per batch, per-operation results.

The query is ``r.json(ops).for_each(step)``, each step one atomic single-document write:

* put, no document stored: ``insert`` (refused with a duplicate-key error if one appeared
  meanwhile: that op goes round again);
* put, a document stored: ``get(id).replace(fn)`` where ``fn`` keeps the stored document unless
  its ``version_key`` is lower (or the document vanished), so check and write are one atomic
  operation on the document;
* delete: ``get(id).replace(fn)`` where ``fn`` returns ``null`` (removes the document) unless a
  newer ``version_key`` is stored.

All with ``durability`` (``hard``: the server answers once the write is on disk) and
``return_changes="always"``: an entry per document with ``old_val`` and ``new_val``, also for
documents left unchanged, so the result of each op comes from the write itself: the put's own
document is stored -> applied (written now, or an idempotent retry with equal data); anything
else stored -> conflict, with that snapshot. An op with no entry (possible in the stand-in, see
docs/connectors.md, and for a delete of a missing document) is settled by reading its document
back after the batch (absent, or not newer, for a delete -> applied; newer -> conflict), or, for a
put, goes round again. Rounds are bounded: ops still unsettled after them are a
``StorageTimeout`` (contention), and the flusher retries the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from connectors._common import dump_json, load_json
from connectors.base import (
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageTimeout,
    WriteResult,
    data_equal,
)
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.layout import document_fields, record_id, snapshot_of, version_key
from connectors.rethinkdb.session import Session

__all__ = ["write_batch"]

ROUNDS = 8
"""Query rounds per batch before unsettled ops (lost races each round) are a timeout."""


def encode_ops(ops: Sequence[Put | Delete], now: datetime) -> tuple[str, dict[str, str]]:
    """The batch as one JSON array text for ``r.json``, and each put's data JSON by name.

    Non-JSON data, bad versions and reserved keys raise ``StorageRejected`` here, before the
    database is touched.
    """
    stamp = dump_json({"$reql_type$": "TIME", "epoch_time": now.timestamp(), "timezone": "+00:00"})
    items: list[str] = []
    texts: dict[str, str] = {}
    for op in ops:
        rid = dump_json([record_id(op.name)])[1:-1]
        key = version_key(op.version)
        if isinstance(op, Put):
            text = dump_json(op.data)
            texts[op.name] = text
            doc = document_fields(op.name, op.version, text)
            items.append(f'{{"id":{rid},"key":"{key}","del":false,'
                         f'"doc":{doc[:-1]},"updated_at":{stamp}}}}}')  # fmt: skip
        else:
            items.append(f'{{"id":{rid},"key":"{key}","del":true,"doc":null}}')
    return "[" + ",".join(items) + "]", texts


def _query(table: Any, batch: str, durability: str) -> Any:
    r = reql()
    options = {"durability": durability, "return_changes": "always"}

    def step(op: Any) -> Any:
        stored = table.get(op["id"])
        doc = op["doc"]
        delete = stored.replace(
            lambda cur: r.branch(cur.eq(None).or_(cur["version_key"].le(op["key"])), None, cur),
            **options,
        )
        # Nested two-way branches: the stand-in does not take r.branch's multi-way form.
        put = r.branch(
            stored.default(None).eq(None),
            table.insert(doc, **options),
            stored.replace(
                lambda cur: r.branch(cur.eq(None).or_(cur["version_key"].lt(op["key"])), doc, cur),
                **options,
            ),
        )
        return r.branch(op["del"], delete, put)

    return r.json(batch).for_each(step)


async def write_batch(
    session: Session,
    table: Any,
    ops: Sequence[Put | Delete],
    now: datetime,
    durability: str,
) -> list[WriteResult]:
    batch, texts = encode_ops(ops, now)
    results: dict[str, WriteResult] = {}
    pending = list(ops)
    for _ in range(ROUNDS):
        answer = await session.run(
            _query(table, batch, durability), f"write of {len(pending)} operations"
        )
        by_id = _entries(answer)
        unsettled: list[Put | Delete] = []
        for op in pending:
            entry = by_id.get(record_id(op.name))
            result = None if entry is None else _settle(op, entry, texts)
            if result is None:
                unsettled.append(op)
            else:
                results[op.name] = result
        deletes = [op for op in unsettled if isinstance(op, Delete)]
        if deletes:
            stored = await _read_back(session, table, deletes)
            for op in deletes:
                current = stored.get(op.name)
                if current is None or current.version <= op.version:
                    # Gone (deleted by this write, or missing): applied. Still there and not
                    # newer: this write found it missing and it came back since; also applied
                    # at the write's moment (a later writer put it back).
                    results[op.name] = WriteResult(op, Outcome.APPLIED)
                else:
                    results[op.name] = WriteResult(op, Outcome.CONFLICT, current)
        pending = [op for op in unsettled if isinstance(op, Put)]
        if not pending:
            return [results[op.name] for op in ops]
        batch, _ = encode_ops(pending, now)
    raise StorageTimeout(
        f"write: {len(pending)} operations lost every race for their documents in {ROUNDS} rounds"
    )


def _entries(answer: Any) -> dict[str, dict[str, Any]]:
    """Change entries by document id (``new_val`` first: it is what the write left)."""
    found: dict[str, dict[str, Any]] = {}
    if not isinstance(answer, dict):
        return found
    for entry in answer.get("changes") or ():
        if entry.get("error"):
            continue  # a lost insert race: the op goes round again
        doc = entry.get("new_val") or entry.get("old_val")
        if isinstance(doc, dict) and "id" in doc:
            found[doc["id"]] = entry
    return found


def _settle(op: Put | Delete, entry: dict[str, Any], texts: dict[str, str]) -> WriteResult | None:
    """The op's result from its change entry; ``None``: not settled by it."""
    after = entry.get("new_val")
    if isinstance(op, Delete):
        if after is None:
            return WriteResult(op, Outcome.APPLIED)
        current = snapshot_of(after)
        if current.version > op.version:
            return WriteResult(op, Outcome.CONFLICT, current)
        return None
    if after is None:
        return None  # removed meanwhile by another writer's delete: go round again
    if after["version_key"] == version_key(op.version):
        text = texts[op.name]
        stored = after["data_json"]
        if stored == text or data_equal(load_json(stored), op.data):
            return WriteResult(op, Outcome.APPLIED)
    return WriteResult(op, Outcome.CONFLICT, snapshot_of(after))


async def _read_back(
    session: Session, table: Any, ops: Sequence[Put | Delete]
) -> dict[str, Snapshot]:
    r = reql()
    ids = dump_json([record_id(op.name) for op in ops])
    docs = await session.run(
        table.get_all(r.args(r.json(ids)))
        .pluck("name", "version_key", "data_json")
        .coerce_to("array"),
        f"read back {len(ops)} deletes",
    )
    return {doc["name"]: snapshot_of(doc) for doc in docs}
