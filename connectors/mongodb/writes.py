"""One batch of conditional writes: an unordered bulk of replace-upserts and deletes, and the
per-operation outcomes.

* ``Put(name, v)`` is ``ReplaceOne({_id: name, version: {$lt: v}}, doc, upsert=True)``: it
  replaces a lower version, or inserts when nothing is stored. When a version ``>= v`` is
  stored the filter matches nothing and the upsert's insert collides with the stored ``_id``:
  duplicate key (11000) for that item alone. Those names are read back (one ``find``): the same
  version with equal data is an idempotent retry (applied), anything newer a conflict.
* ``Delete(name, v)`` is ``DeleteOne({_id: name, version: {$lte: v}})``. When the bulk deleted
  as many documents as it had deletes, each removed its record; otherwise the names are read
  back: missing means applied (deleted, or nothing was there), a newer version a conflict.
* A put whose read-back finds a lower version or nothing (another writer's insert won the race
  for the ``_id``, then it was deleted or is older) and a delete that finds a version it may
  remove (written meanwhile) are sent again, up to ``ATTEMPTS`` rounds; then ``StorageTimeout``.

The check and the write are one atomic operation on the document in MongoDB, so concurrent
writers of one version see exactly one winner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
from connectors.mongodb.documents import PROJECTION, Encoded, snapshot_of
from connectors.mongodb.errors import translate

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["ATTEMPTS", "DUPLICATE_KEY", "Batch"]

ATTEMPTS = 5
_APPLIED = Outcome.APPLIED
DUPLICATE_KEY = 11000


@dataclass(slots=True)
class Batch:
    """The operations of one ``write`` call, their encoded documents and their outcomes."""

    ops: Sequence[Put | Delete]
    encoded: dict[int, Encoded]
    """Index of each put in ``ops`` -> its document and JSON text."""

    async def run(self, collection: AsyncCollection[dict[str, Any]]) -> list[WriteResult]:
        from pymongo import DeleteOne, ReplaceOne

        ops = self.ops
        results: list[WriteResult | None] = [None] * len(ops)
        pending = list(range(len(ops)))
        for _ in range(ATTEMPTS):
            requests: list[ReplaceOne[dict[str, Any]] | DeleteOne] = []
            for index in pending:
                op = ops[index]
                if isinstance(op, Delete):
                    requests.append(DeleteOne({"_id": op.name, "version": {"$lte": op.version}}))
                else:
                    requests.append(
                        ReplaceOne(
                            {"_id": op.name, "version": {"$lt": op.version}},
                            # _id in the replacement too: an upsert then inserts exactly it.
                            self.encoded[index].document,
                            upsert=True,
                        )
                    )
            refused, deleted = await _bulk(collection, requests)
            if not refused and len(pending) == len(ops) == len(self.encoded):
                # All puts, all written: the common case, without the bookkeeping below.
                return [WriteResult(op, _APPLIED, None) for op in ops]
            deletes = [index for index in pending if isinstance(ops[index], Delete)]
            unsure = [pending[position] for position in refused]
            if deletes and deleted < len(deletes):
                unsure += deletes
            elif deletes:
                for index in deletes:
                    results[index] = WriteResult(ops[index], Outcome.APPLIED)
            unsure_set = set(unsure)
            for index in pending:
                if index not in unsure_set and not isinstance(ops[index], Delete):
                    results[index] = WriteResult(ops[index], Outcome.APPLIED)
            if not unsure:
                break
            stored = await _read_back(collection, [ops[index].name for index in unsure])
            pending = []
            for index in sorted(unsure_set):
                result = self._settle(index, stored.get(ops[index].name))
                if result is None:
                    pending.append(index)
                else:
                    results[index] = result
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

    def _settle(self, index: int, document: dict[str, Any] | None) -> WriteResult | None:
        """The outcome of an operation the bulk did not clearly apply, from what is stored;
        ``None``: send it again."""
        op = self.ops[index]
        current = None if document is None else snapshot_of(document)
        if isinstance(op, Delete):
            if current is None:
                return WriteResult(op, Outcome.APPLIED)
            if current.version > op.version:
                return WriteResult(op, Outcome.CONFLICT, current)
            return None
        if current is None or current.version < op.version:
            return None
        # Equal data as the contract defines it (key order aside; 1, 1.0 and true differ).
        if current.version == op.version and data_equal(
            current.data, load_json(self.encoded[index].text)
        ):
            return WriteResult(op, Outcome.APPLIED)  # a retry of what is stored
        return WriteResult(op, Outcome.CONFLICT, current)


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
    found: dict[str, dict[str, Any]] = {}
    async for document in collection.find({"_id": {"$in": names}}, PROJECTION):
        found[document["_id"]] = document
    return found
