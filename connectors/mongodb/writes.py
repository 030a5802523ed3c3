"""One batch of conditional writes: an unordered bulk of replace-upserts and deletes, and the
per-operation outcomes.

* ``Put(name, v)`` is ``ReplaceOne({_id: name, fence: {$exists: false}, version: {$lt: v}}, doc,
  upsert=True)``: it replaces a lower version, or inserts when nothing is stored. When a version
  ``>= v`` is stored the filter matches nothing and the upsert's insert collides with the stored
  ``_id``: duplicate key (11000) for that item alone. Those names are read back (one ``find``):
  the same version with equal data is an idempotent retry (applied), anything newer a conflict.
* ``Delete(name, v)`` is ``DeleteOne({_id: name, version: {$lte: v}})``. When the bulk deleted
  as many documents as it had deletes, each removed its record; otherwise the names are read
  back: missing (or a tombstone) means applied, a newer version a conflict.
* Fenced (``fence=f``): the filter also requires the stored fence to be missing or ``<= f``, a
  put replaces a tombstone as it would a lower version, and the written document carries
  ``fence: f`` (the new maximum, since the filter saw none higher). A fenced delete is a
  replace-upsert too, of the tombstone ``{_id, tombstone: true, fence: f}``, with ``{$or:
  [{tombstone: true}, {version: {$lte: v}}]}``: it also inserts the tombstone where nothing is
  stored. A refused one collides like a put; reading back, a stored fence above ``f`` is
  ``FENCED``. A fenced idempotent retry raises a lower stored fence to ``f`` with one
  ``UpdateOne`` pinned to the document it read (version, ``updated_at``, fence): if that
  document changed meanwhile, the put goes round again.
* An unfenced put over a document that has a fence (a fenced record or a tombstone) collides
  with the first filter; it goes again pinned to the fence it read (``fence: F`` in the filter,
  ``F`` in the document), so the stored fence is kept.
* A put whose read-back finds a lower version or nothing (another writer's insert won the race
  for the ``_id``, then it was deleted or is older) and a delete that finds a version it may
  remove (written meanwhile) are sent again, up to ``ATTEMPTS`` rounds; then ``StorageTimeout``.

Every check (fence, version) and its write are one atomic operation on one document in MongoDB,
so concurrent writers of one version see exactly one winner, and a write with a lower fence never
lands after a higher one was applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectors._common import load_json
from connectors.base import (
    Delete,
    Outcome,
    Put,
    StorageTimeout,
    WriteResult,
    data_equal,
)
from connectors.mongodb.documents import TOMBSTONE, Encoded, snapshot_of
from connectors.mongodb.errors import translate

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["ATTEMPTS", "DUPLICATE_KEY", "Batch"]

ATTEMPTS = 5
_APPLIED = Outcome.APPLIED
DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class Raise:
    """Raise the fence of the document an idempotent retry found (``filter``) to ``fence``."""

    filter: dict[str, Any]
    fence: int


_IS_TOMBSTONE = {TOMBSTONE: True}


@dataclass(slots=True)
class Batch:
    """The operations of one ``write`` call, their encoded documents and their outcomes."""

    ops: Sequence[Put | Delete]
    encoded: dict[int, Encoded]
    """Index of each put in ``ops`` -> its document and JSON text."""
    tombstones: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Index of each fenced delete in ``ops`` -> its tombstone document."""
    pins: dict[int, int] = field(default_factory=dict)
    """Index of an unfenced put -> the fence stored under its name (read back), kept by it."""

    def _request(self, index: int) -> Any:
        from bson import Int64
        from pymongo import DeleteOne, ReplaceOne

        op = self.ops[index]
        if isinstance(op, Delete):
            if op.fence is None:
                return DeleteOne({"_id": op.name, "version": {"$lte": op.version}})
            older = _fenced(op.name, op.fence, {"version": {"$lte": op.version}})
            return ReplaceOne(older, self.tombstones[index], upsert=True)
        # _id in the replacement too: an upsert then inserts exactly it.
        document = self.encoded[index].document
        lower: dict[str, Any] = {"version": {"$lt": op.version}}
        if op.fence is not None:
            filter_ = _fenced(op.name, op.fence, lower)
        elif index in self.pins:
            pinned = Int64(self.pins[index])
            # In $and, as every $or here: the stand-in drops the parentheses of a $or that
            # stands beside other terms (docs/connectors.md).
            filter_ = {"_id": op.name, "fence": pinned, "$and": [{"$or": [_IS_TOMBSTONE, lower]}]}
            document = {**document, "fence": pinned}
        else:
            filter_ = {"_id": op.name, "fence": {"$exists": False}, **lower}
        return ReplaceOne(filter_, document, upsert=True)

    async def run(self, collection: AsyncCollection[dict[str, Any]]) -> list[WriteResult]:
        ops = self.ops
        results: list[WriteResult | None] = [None] * len(ops)
        pending = list(range(len(ops)))
        for _ in range(ATTEMPTS):
            requests = [self._request(index) for index in pending]
            refused, deleted = await _bulk(collection, requests)
            if not refused and len(pending) == len(ops) == len(self.encoded):
                # All puts, all written: the common case, without the bookkeeping below.
                return [WriteResult(op, _APPLIED, None) for op in ops]
            deletes = [i for i in pending if isinstance(ops[i], Delete) and ops[i].fence is None]
            unsure = {pending[position] for position in refused}
            if deletes and deleted < len(deletes):
                unsure.update(deletes)
            for index in pending:
                if index not in unsure:
                    results[index] = WriteResult(ops[index], _APPLIED)
            if not unsure:
                break
            stored = await _read_back(collection, [ops[index].name for index in unsure])
            pending = []
            raises: list[tuple[int, Raise]] = []
            for index in sorted(unsure):
                result = self._settle(index, stored.get(ops[index].name))
                if result is None:
                    pending.append(index)
                elif isinstance(result, Raise):
                    raises.append((index, result))
                else:
                    results[index] = result
            if raises and await _raise_fences(collection, [r for _, r in raises]):
                for index, _ in raises:
                    results[index] = WriteResult(ops[index], _APPLIED)
            elif raises:
                # Some document changed since it was read: those puts go round again (the
                # ones whose raise applied then find their own fence: applied).
                pending = sorted(pending + [index for index, _ in raises])
            if not pending:
                break
        else:
            names = ", ".join(repr(ops[index].name) for index in pending[:3])
            raise StorageTimeout(
                f"{len(pending)} writes ({names}...) kept racing other writers of the same "
                f"records for {ATTEMPTS} rounds"
            )
        done = [result for result in results if result is not None]
        assert len(done) == len(ops), "every operation has an outcome"
        return done

    def _settle(self, index: int, document: dict[str, Any] | None) -> WriteResult | Raise | None:
        """The outcome of an operation the bulk did not clearly apply, from what is stored
        (the whole document, or ``None``); a ``Raise`` to apply; ``None``: send it again."""
        op = self.ops[index]
        stored_fence = None if document is None else document.get("fence")
        live = document is not None and TOMBSTONE not in document
        current = snapshot_of(document) if live and document is not None else None
        if op.fence is not None and stored_fence is not None and stored_fence > op.fence:
            return WriteResult(op, Outcome.FENCED, current, int(stored_fence))
        if isinstance(op, Delete):
            if current is None:
                # Nothing to delete: done, unless a fenced delete still has to leave its
                # tombstone (the filter admits what is there now).
                return WriteResult(op, Outcome.APPLIED) if op.fence is None else None
            if current.version > op.version:
                return WriteResult(op, Outcome.CONFLICT, current)
            return None
        if current is None or current.version < op.version:
            if op.fence is None:
                # Kept by the unfenced put: the fence stored under the name, if any.
                if stored_fence is None:
                    self.pins.pop(index, None)
                else:
                    self.pins[index] = int(stored_fence)
            return None
        # Equal data as the contract defines it (key order aside; 1, 1.0 and true differ).
        if current.version == op.version and data_equal(
            current.data, load_json(self.encoded[index].text)
        ):
            if op.fence is not None and (stored_fence is None or stored_fence < op.fence):
                assert document is not None
                pinned = {
                    "_id": op.name,
                    "version": document["version"],
                    "updated_at": document["updated_at"],
                    "fence": {"$exists": False} if stored_fence is None else stored_fence,
                }
                return Raise(pinned, op.fence)
            return WriteResult(op, Outcome.APPLIED)  # a retry of what is stored
        return WriteResult(op, Outcome.CONFLICT, current)


def _fenced(name: str, fence: int, version: dict[str, Any]) -> dict[str, Any]:
    """The filter of a fenced write: no fence stored under ``name`` or one not above ``fence``
    (int64 against int64: exact), and a tombstone or a record whose version is ``version``.
    (``$not`` would say "not above" shorter; the stand-in lacks it.)"""
    from bson import Int64

    at_most = {"$or": [{"fence": {"$exists": False}}, {"fence": {"$lte": Int64(fence)}}]}
    return {"_id": name, "$and": [at_most, {"$or": [_IS_TOMBSTONE, version]}]}


async def _bulk(
    collection: AsyncCollection[dict[str, Any]], requests: list[Any]
) -> tuple[list[int], int]:
    """Positions in ``requests`` refused with duplicate key, and the number of deletions.

    Any other item error, and every write concern error, fails the whole call: what was
    written is not known to be durable, and the flusher retries the batch (which is idempotent).
    """
    from pymongo.errors import BulkWriteError

    try:
        result = await collection.bulk_write(requests, ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        others = [e for e in details.get("writeErrors", ()) if e.get("code") != DUPLICATE_KEY]
        if others or details.get("writeConcernErrors"):
            # Translated without the duplicate keys (conflicts, not failures): what is left
            # decides between rejected (the flusher splits the batch) and unavailable/timeout.
            failure = BulkWriteError({**details, "writeErrors": others})
            error = translate(failure, f"write of {len(requests)} operations")
            assert error is not None
            raise error from exc
        refused = [e["index"] for e in details["writeErrors"]]
        return refused, int(details.get("nRemoved", 0))
    return [], result.deleted_count


async def _read_back(
    collection: AsyncCollection[dict[str, Any]], names: list[str]
) -> dict[str, dict[str, Any]]:
    """The stored documents of ``names``, tombstones included, without ``collection``."""
    found: dict[str, dict[str, Any]] = {}
    async for document in collection.find({"_id": {"$in": names}}, {"collection": 0}):
        found[document["_id"]] = document
    return found


async def _raise_fences(collection: AsyncCollection[dict[str, Any]], raises: list[Raise]) -> bool:
    """Apply the fence raises (one bulk); whether every one found its document unchanged."""
    from bson import Int64
    from pymongo import UpdateOne

    # Not upserts: a document that changed must not be created anew from the pin.
    requests = [UpdateOne(r.filter, {"$set": {"fence": Int64(r.fence)}}) for r in raises]
    result = await collection.bulk_write(requests, ordered=False)
    return result.matched_count == len(raises)
