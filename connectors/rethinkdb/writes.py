"""Conditional batch writes: one ReQL query per batch, per-operation results.

The query is ``r.json(ops).for_each(step)``, each step one atomic single-document write,
``get(id).replace(fn)``: for a put, ``fn`` returns the new document unless the stored
``version_key`` is not lower (then the stored document: unchanged); for a delete, ``null``
(removes it) unless a newer ``version_key`` is stored. RethinkDB calls ``fn`` with ``null`` for
a missing document, so a put inserts it.

Puts of first versions (0 and 1: most often records not stored yet) go instead, in the same
query, into one plain bulk ``insert``, RethinkDB's cheapest write, which applies per document
where none exists and is refused where one does; it answers the ids it inserted (applied), and
the refused ops take the conditional replace in the next round. (The reqlite stand-in's
``replace`` skips a missing document instead of calling ``fn``: such a put, having no change
entry, is inserted in the next round; on RethinkDB this does not happen.)

Both with ``durability`` (``hard``: the server answers once the write is on disk). The
replaces run with ``return_changes="always"``: an entry per document with ``old_val`` and
``new_val``, also for documents left unchanged, so the result of each op comes from the write
itself: the put's own document is stored -> applied (written now, or an idempotent retry with
equal data); anything else stored -> conflict, with that snapshot. An op with no entry
(possible in the stand-in, see docs/connectors.md, and for a delete of a missing document) is
settled by reading its document back after the batch (absent, or not newer, for a delete ->
applied; newer -> conflict), or, for a put, goes round again. Rounds are bounded: ops still
unsettled after them are a ``StorageTimeout`` (contention), and the flusher retries the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


FIRST_VERSIONS = 1
"""Puts of versions up to this (a record's creation, 0, and its first write, 1) are most often of
records not stored yet: the first round sends them as one plain bulk ``insert``, RethinkDB's
cheapest write, which it refuses per document where one exists (those go the conditional way
in the next round)."""


@dataclass(frozen=True, slots=True)
class _Encoded:
    """One operation as JSON text: ``item`` for the ``for_each`` step, ``doc`` (puts) for
    ``insert``."""

    op: Put | Delete
    item: str
    doc: str | None


def encode_ops(ops: Sequence[Put | Delete], now: datetime) -> tuple[list[_Encoded], dict[str, str]]:
    """Each operation as JSON text, and each put's data JSON by name.

    Non-JSON data, bad versions and reserved keys raise ``StorageRejected`` here, before the
    database is touched.
    """
    stamp = dump_json({"$reql_type$": "TIME", "epoch_time": now.timestamp(), "timezone": "+00:00"})
    encoded: list[_Encoded] = []
    texts: dict[str, str] = {}
    for op in ops:
        rid = dump_json([record_id(op.name)])[1:-1]
        key = version_key(op.version)
        if isinstance(op, Put):
            text = dump_json(op.data)
            texts[op.name] = text
            doc = f'{document_fields(op.name, op.version, text)[:-1]},"updated_at":{stamp}}}'
            item = f'{{"id":{rid},"key":"{key}","del":false,"doc":{doc}}}'
            encoded.append(_Encoded(op, item, doc))
        else:
            item = f'{{"id":{rid},"key":"{key}","del":true,"doc":null}}'
            encoded.append(_Encoded(op, item, None))
    return encoded, texts


def _conditional(table: Any, items: list[str], durability: str) -> Any:
    """``for_each`` over the ops: one atomic conditional ``replace`` per document."""
    r = reql()

    def step(op: Any) -> Any:
        def keep_or_replace(cur: Any) -> Any:
            # Nested two-way branches: the stand-in does not take r.branch's multi-way form.
            return r.branch(
                op["del"],
                r.branch(cur.eq(None).or_(cur["version_key"].le(op["key"])), None, cur),
                r.branch(cur.eq(None).or_(cur["version_key"].lt(op["key"])), op["doc"], cur),
            )

        return table.get(op["id"]).replace(
            keep_or_replace, durability=durability, return_changes="always"
        )

    return r.json("[" + ",".join(items) + "]").for_each(step)


def _insert(table: Any, docs: list[str], durability: str) -> Any:
    """A plain bulk insert answering the ids it inserted (a document that exists is refused)."""
    return table.insert(
        reql().json("[" + ",".join(docs) + "]"), durability=durability, return_changes=True
    ).do(lambda res: res["changes"].default([]).map(lambda change: change["new_val"]["id"]))


def _query(table: Any, inserts: list[str], items: list[str], durability: str) -> Any:
    """One query answering ``[inserted ids, for_each result]``."""
    r = reql()
    if not items:
        return _insert(table, inserts, durability).do(lambda ids: [ids, None])
    conditional = _conditional(table, items, durability)
    if not inserts:
        return conditional.do(lambda result: [[], result])
    return _insert(table, inserts, durability).do(
        lambda ids: conditional.do(lambda result: r.expr([ids, result]))
    )


async def write_batch(
    session: Session,
    table: Any,
    ops: Sequence[Put | Delete],
    now: datetime,
    durability: str,
) -> list[WriteResult]:
    encoded, texts = encode_ops(ops, now)
    results: dict[str, WriteResult] = {}
    # The way each put goes next: a bulk insert (first versions at first; puts whose document
    # the stand-in's replace found missing) or the conditional replace (everything else).
    inserting = {e.op.name for e in encoded if e.doc is not None and e.op.version <= FIRST_VERSIONS}
    pending = encoded
    for _ in range(ROUNDS):
        inserts = [e.doc for e in pending if e.op.name in inserting and e.doc is not None]
        items = [e.item for e in pending if e.op.name not in inserting]
        answer = await session.run(
            _query(table, inserts, items, durability), f"write of {len(pending)} operations"
        )
        inserted, changes = answer
        inserted_ids = set(inserted or ())
        by_id = _entries(changes)
        unsettled: list[_Encoded] = []
        for e in pending:
            rid = record_id(e.op.name)
            if e.op.name in inserting:
                if rid in inserted_ids:
                    results[e.op.name] = WriteResult(e.op, Outcome.APPLIED)
                else:  # refused: a document exists; the conditional replace settles it
                    inserting.discard(e.op.name)
                    unsettled.append(e)
                continue
            entry = by_id.get(rid)
            result = None if entry is None else _settle(e.op, entry, texts)
            if result is not None:
                results[e.op.name] = result
                continue
            if entry is None and isinstance(e.op, Put):
                # No entry: the document was missing and the stand-in's replace skips those
                # (RethinkDB inserts): an insert next.
                inserting.add(e.op.name)
            unsettled.append(e)
        deletes = [e.op for e in unsettled if isinstance(e.op, Delete)]
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
        pending = [e for e in unsettled if isinstance(e.op, Put)]
        if not pending:
            return [results[op.name] for op in ops]
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
