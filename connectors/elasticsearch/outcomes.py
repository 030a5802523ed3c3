"""The pure rules of a conditional write: what to do for each operation given what is stored,
and what each bulk item's answer means. No I/O here.

Writes are compare-and-set on Elasticsearch's own sequence numbers: the state an operation is
decided on (read with a realtime ``mget``) is the state it is written over, because the bulk
item carries ``if_seq_no``/``if_primary_term`` of that state (or is a ``create``, which only
succeeds if no document exists). A 409 means someone changed the document in between: it is
read again and decided again. So each applied write was decided on exactly the state it
replaced, which makes "apply only over an older version" atomic, and concurrent writers of one
version yield one winner (the others re-read, find that version, and compare data).

Fences live in the same document (``fence``; a deleted name's in a tombstone document, see
``layout.py``), so the fence check is decided on the same read and guarded by the same sequence
number as the version check: a writer whose fence was overtaken meanwhile gets a 409, reads
again and is refused. Check and write are one conditional operation on one document.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from connectors._common import load_json
from connectors.base import Delete, Outcome, Put, Snapshot, WriteResult, data_equal

__all__ = ["Action", "ItemVerdict", "NeedData", "Stored", "decide", "item_verdict"]


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored document as a realtime read saw it; ``text`` is ``None`` if not fetched.

    ``version`` is ``None`` for a tombstone (a deleted name's fence, no record); ``fence`` the
    highest fence applied to the name, ``None`` if it never had a fenced write.
    """

    version: int | None
    seq_no: int
    primary_term: int
    text: str | None = None
    fence: int | None = None

    def snapshot(self, name: str) -> Snapshot:
        assert self.text is not None and self.version is not None
        return Snapshot(name, self.version, load_json(self.text))


@dataclass(frozen=True, slots=True)
class Action:
    """A bulk item to send: ``create``, or ``index``/``update``/``delete`` guarded by the read
    state. ``body``: the record (``record``), a tombstone (``tombstone``) or, for ``update``,
    only the fence (``fence``); ``fence``: the fence the document carries."""

    kind: str
    seq_no: int | None = None
    primary_term: int | None = None
    body: str = "record"
    fence: int | None = None


class NeedData(Enum):
    """The outcome depends on the stored data, which the read did not fetch."""

    TOKEN = "need data"


def decide(
    op: Put | Delete, stored: Stored | None, text: str | None
) -> WriteResult | Action | NeedData:
    """A final result, an action to send, or ``NeedData``; ``text`` is a put's JSON.

    Fences (``connectors/base.py``): a fenced op below the stored fence is refused and changes
    nothing; otherwise the version rules decide, and what applies carries the higher of the
    two fences (an unfenced op carries the stored one on), so a deleted name that had a fence
    keeps it in a tombstone document.
    """
    fence = _carried(op.fence, stored.fence if stored else None)
    if stored is None:
        if isinstance(op, Put):
            return Action("create", fence=fence)
        if fence is None:
            return WriteResult(op, Outcome.APPLIED)  # nothing to delete, no fence to keep
        return Action("create", body="tombstone", fence=fence)
    if op.fence is not None and stored.fence is not None and stored.fence > op.fence:
        if stored.version is None:
            return WriteResult(op, Outcome.FENCED, None, fence=stored.fence)
        if stored.text is None:
            return NeedData.TOKEN
        return WriteResult(op, Outcome.FENCED, stored.snapshot(op.name), fence=stored.fence)
    if stored.version is None:  # a tombstone: no record
        if isinstance(op, Put):
            return Action("index", stored.seq_no, stored.primary_term, fence=fence)
        if stored.fence == fence:
            return WriteResult(op, Outcome.APPLIED)  # nothing to delete, no fence to raise
        return Action("index", stored.seq_no, stored.primary_term, "tombstone", fence)
    if isinstance(op, Put):
        if stored.version < op.version:
            return Action("index", stored.seq_no, stored.primary_term, fence=fence)
        if stored.text is None:
            return NeedData.TOKEN
        current = stored.snapshot(op.name)
        # Equal version and equal data: this put is what is stored (an idempotent retry).
        if stored.version == op.version and (
            stored.text == text or (text is not None and data_equal(current.data, load_json(text)))
        ):
            if fence == stored.fence:
                return WriteResult(op, Outcome.APPLIED)
            return Action("update", stored.seq_no, stored.primary_term, "fence", fence)
        return WriteResult(op, Outcome.CONFLICT, current)
    if stored.version > op.version:
        if stored.text is None:
            return NeedData.TOKEN
        return WriteResult(op, Outcome.CONFLICT, stored.snapshot(op.name))
    if fence is None:
        return Action("delete", stored.seq_no, stored.primary_term)
    return Action("index", stored.seq_no, stored.primary_term, "tombstone", fence)


def _carried(fence: int | None, stored: int | None) -> int | None:
    """The fence a document carries after an applied op with ``fence`` over ``stored``."""
    if fence is None:
        return stored
    return fence if stored is None else max(fence, stored)


class ItemVerdict(Enum):
    APPLIED = "applied"
    REREAD = "reread"
    """409: the document changed since it was read; read it again and decide again."""
    UNSEARCHABLE = "unsearchable"
    """400 on a put whose ``data`` was sent: store it again without the searchable copy."""
    FAILED = "failed"
    """Anything else: the item's error is the batch's error."""


def item_verdict(kind: str, status: int, searchable: bool) -> ItemVerdict:
    """What a bulk item's answer means for the operation that sent it.

    Any 400 of a put sent with ``data`` is taken as ``data`` failing to map (its error type
    varies: ``mapper_parsing_exception``, ``document_parsing_exception`` since 8.8,
    ``illegal_argument_exception`` for the fields limit, ...): the put is sent once more without
    it, and a second 400 fails the batch.
    """
    if 200 <= status < 300:
        return ItemVerdict.APPLIED
    if status == 404 and kind == "delete":
        return ItemVerdict.APPLIED  # gone already
    if status == 409 or (status == 404 and kind == "update"):  # changed, or gone, since read
        return ItemVerdict.REREAD
    if status == 400 and searchable and kind in ("create", "index"):
        return ItemVerdict.UNSEARCHABLE
    return ItemVerdict.FAILED
