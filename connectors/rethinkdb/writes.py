"""Conditional batch writes: one ReQL query per batch, per-operation results.

The query is ``r.json(ops).for_each(step)``, each step one atomic single-document write,
``get(id).replace(fn)``: for a put, ``fn`` returns the new document unless the stored
``version_key`` is not lower (then the stored document: unchanged); for a delete, ``null``
(removes it) unless a newer ``version_key`` is stored. RethinkDB calls ``fn`` with ``null`` for
a missing document, so a put inserts it.

Fences (``fence=f``) are checked by the same ``fn``, so fence check, version check and write are
one atomic operation on one document: a stored ``fence_key`` above ``f`` returns the stored
document unchanged (``FENCED``). Otherwise the version rules apply, a tombstone counting as
nothing stored: a put writes its document with ``fence_key`` ``f`` (the new maximum); a fenced
delete writes the tombstone (layout.py) with ``fence_key`` ``f``, also where nothing is stored;
the idempotent retry of a fenced put (stored version and data JSON text equal to its own)
raises a lower ``fence_key`` to ``f`` and changes nothing else. Unfenced ops keep what is
stored: a put copies the stored ``fence_key`` into its document, a delete of a record with a
fence leaves a tombstone with that fence, a delete of a tombstone leaves it. A put whose retry
has data equal to what is stored but not the same text (key order) goes round again with the
stored text to compare (``match``), so its fence is raised by the same atomic ``fn``.

Puts of first versions (0 and 1: most often records not stored yet) go instead, in the same
query, into one plain bulk ``insert``, RethinkDB's cheapest write, which applies per document
where none exists and is refused where one does (a tombstone too); it answers the ids it
inserted (applied), and the refused ops take the conditional replace in the next round. (The
reqlite stand-in's ``replace`` skips a missing document instead of calling ``fn``: such a put,
or a fenced delete (its tombstone), having no change entry, is inserted in the next round; on
RethinkDB this does not happen.)

Both with ``durability`` (``hard``: the server answers once the write is on disk). The
replaces run with ``return_changes="always"``: an entry per document with ``old_val`` and
``new_val``, also for documents left unchanged, so the result of each op comes from the write
itself: a stored fence above the op's -> fenced; the put's own document is stored -> applied
(written now, or an idempotent retry with equal data); anything else stored -> conflict, with
that snapshot. An unfenced delete with no entry (possible in the stand-in, see
docs/connectors.md, and for a delete of a missing document) is settled by reading its document
back after the batch (absent, a tombstone, or not newer -> applied; newer -> conflict). Rounds
are bounded: ops still unsettled after them are a ``StorageTimeout`` (contention), and the
flusher retries the batch.
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
from connectors.rethinkdb.layout import (
    TOMBSTONE,
    document_fields,
    fence_key,
    is_record,
    record_id,
    snapshot_of,
    tombstone_fields,
    version_key,
)
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
    """One operation as JSON text: ``item`` for the ``for_each`` step, ``doc`` for ``insert``
    (a put's document; a fenced delete's tombstone)."""

    op: Put | Delete
    head: str
    """The item's fields but ``match``, as JSON text without its closing brace."""
    doc: str | None

    @property
    def item(self) -> str:
        return self.item_matching(None)

    def item_matching(self, text: str | None) -> str:
        """The item, its put comparing the stored data JSON with ``text`` (default: its own)."""
        match = "null" if text is None else dump_json([text])[1:-1]
        return f'{self.head},"match":{match}}}'


def encode_ops(ops: Sequence[Put | Delete], now: datetime) -> tuple[list[_Encoded], dict[str, str]]:
    """Each operation as JSON text, and each put's data JSON by name.

    Non-JSON data and bad versions or fences raise ``StorageRejected`` here, before the
    database is touched.
    """
    stamp = dump_json({"$reql_type$": "TIME", "epoch_time": now.timestamp(), "timezone": "+00:00"})
    encoded: list[_Encoded] = []
    texts: dict[str, str] = {}
    for op in ops:
        rid = dump_json([record_id(op.name)])[1:-1]
        key = version_key(op.version)
        fence = "null" if op.fence is None else f'"{fence_key(op.fence)}"'
        if isinstance(op, Put):
            text = dump_json(op.data)
            texts[op.name] = text
            fields = document_fields(op.name, op.version, text, op.fence)
            doc = f'{fields[:-1]},"updated_at":{stamp}}}'
            head = f'{{"id":{rid},"key":"{key}","fence":{fence},"del":false,"doc":{doc}'
            encoded.append(_Encoded(op, head, doc))
        else:
            tomb = tombstone_fields(op.name, op.fence)
            head = f'{{"id":{rid},"key":"{key}","fence":{fence},"del":true,"doc":{tomb}'
            encoded.append(_Encoded(op, head, None if op.fence is None else tomb))
    return encoded, texts


def _conditional(table: Any, items: list[str], durability: str) -> Any:
    """``for_each`` over the ops: one atomic conditional ``replace`` per document."""
    r = reql()

    def step(op: Any) -> Any:
        # Nested two-way branches throughout: the stand-in does not take r.branch's multi-way
        # form, and a branch evaluates only the arm taken (cur may be null, fields absent).
        unfenced = op["fence"].eq(None)

        def fenced_out(cur: Any) -> Any:
            """A stored fence above the op's."""
            return r.branch(
                unfenced,
                False,
                r.branch(
                    cur.eq(None),
                    False,
                    r.branch(cur.has_fields("fence_key"), cur["fence_key"].gt(op["fence"]), False),
                ),
            )

        def kept(doc: Any, cur: Any) -> Any:
            """``doc`` (a put's document, a tombstone) with the stored fence if the op has none."""
            return r.branch(
                unfenced,
                r.branch(
                    cur.has_fields("fence_key"),
                    doc.merge(r.object("fence_key", cur["fence_key"])),
                    doc,
                ),
                doc,
            )

        def delete(cur: Any) -> Any:
            tomb = op["doc"]
            return r.branch(
                cur.eq(None),
                r.branch(unfenced, None, tomb),
                r.branch(
                    cur.has_fields("tombstone"),
                    r.branch(unfenced, cur, tomb),
                    r.branch(
                        cur["version_key"].le(op["key"]),
                        r.branch(
                            unfenced.and_(cur.has_fields("fence_key").not_()),
                            None,
                            kept(tomb, cur),
                        ),
                        cur,
                    ),
                ),
            )

        def raises(cur: Any) -> Any:
            """A fenced put's idempotent retry of what is stored, whose fence is lower."""
            match = r.branch(op["match"].eq(None), op["doc"]["data_json"], op["match"])
            return r.branch(
                unfenced,
                False,
                r.branch(
                    cur["version_key"].eq(op["key"]),
                    r.branch(
                        cur["data_json"].eq(match),
                        r.branch(
                            cur.has_fields("fence_key"),
                            cur["fence_key"].lt(op["fence"]),
                            True,
                        ),
                        False,
                    ),
                    False,
                ),
            )

        def put(cur: Any) -> Any:
            doc = op["doc"]
            return r.branch(
                cur.eq(None),
                doc,
                r.branch(
                    cur.has_fields("tombstone"),
                    kept(doc, cur),
                    r.branch(
                        cur["version_key"].lt(op["key"]),
                        kept(doc, cur),
                        r.branch(raises(cur), cur.merge(r.object("fence_key", op["fence"])), cur),
                    ),
                ),
            )

        def keep_or_replace(cur: Any) -> Any:
            return r.branch(fenced_out(cur), cur, r.branch(op["del"], delete(cur), put(cur)))

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
    # The way each op goes next: a bulk insert (first versions of puts at first; puts and
    # fenced deletes whose document the stand-in's replace found missing) or the conditional
    # replace (everything else).
    inserting = {
        e.op.name
        for e in encoded
        if isinstance(e.op, Put) and e.op.version <= FIRST_VERSIONS and e.doc is not None
    }
    matches: dict[str, str] = {}  # name -> the stored data text a put's retry compares
    pending = encoded
    for _ in range(ROUNDS):
        inserts = [e.doc for e in pending if e.op.name in inserting and e.doc is not None]
        items = [
            e.item_matching(matches.get(e.op.name)) for e in pending if e.op.name not in inserting
        ]
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
            if isinstance(result, WriteResult):
                results[e.op.name] = result
                continue
            if isinstance(result, Rematch):
                matches[e.op.name] = result.text
            elif entry is None and e.doc is not None:
                # No entry: the document was missing and the stand-in's replace skips those
                # (RethinkDB inserts): an insert next.
                inserting.add(e.op.name)
            unsettled.append(e)
        deletes = [e.op for e in unsettled if isinstance(e.op, Delete) and e.op.fence is None]
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
        pending = [e for e in unsettled if e.op.name not in results]
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


@dataclass(frozen=True, slots=True)
class Rematch:
    """A fenced put whose data equals what is stored, in other JSON text, and whose fence is
    higher: sent again comparing ``text``, so the same atomic write raises the fence."""

    text: str


def _settle(
    op: Put | Delete, entry: dict[str, Any], texts: dict[str, str]
) -> WriteResult | Rematch | None:
    """The op's result from its change entry; ``None``: not settled by it."""
    after = entry.get("new_val")
    record = after is not None and is_record(after)
    if op.fence is not None and after is not None and "fence_key" in after:
        # What the write left: the op's own fence if it applied, a higher one if refused.
        stored = int(after["fence_key"])
        if stored > op.fence:
            return WriteResult(op, Outcome.FENCED, snapshot_of(after) if record else None, stored)
    if isinstance(op, Delete):
        if not record:
            if op.fence is None or after is not None:
                return WriteResult(op, Outcome.APPLIED)  # removed, or a tombstone (this one)
            return None  # a fenced delete leaves a tombstone: not done
        assert after is not None
        current = snapshot_of(after)
        if current.version > op.version:
            return WriteResult(op, Outcome.CONFLICT, current)
        return None
    if not record:
        return None  # removed meanwhile by another writer's delete: go round again
    assert after is not None
    if after["version_key"] == version_key(op.version):
        text = texts[op.name]
        stored_text = after["data_json"]
        if stored_text == text or data_equal(load_json(stored_text), op.data):
            if op.fence is not None and after.get("fence_key", "") < fence_key(op.fence):
                return Rematch(stored_text)  # equal data, other text: its fence not raised
            return WriteResult(op, Outcome.APPLIED)
    return WriteResult(op, Outcome.CONFLICT, snapshot_of(after))


async def _read_back(
    session: Session, table: Any, ops: Sequence[Put | Delete]
) -> dict[str, Snapshot]:
    """The records stored under the names of ``ops`` (tombstones are not records)."""
    r = reql()
    ids = dump_json([record_id(op.name) for op in ops])
    docs = await session.run(
        table.get_all(r.args(r.json(ids)))
        .pluck("name", "version_key", "data_json", TOMBSTONE)
        .coerce_to("array"),
        f"read back {len(ops)} deletes",
    )
    return {doc["name"]: snapshot_of(doc) for doc in docs if is_record(doc)}
