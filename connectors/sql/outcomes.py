"""One result per operation, from what the batch's statements proved and a read-back of the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connectors._common import load_json
from connectors.base import Delete, Outcome, Put, Snapshot, WriteResult, data_equal

__all__ = ["outcomes"]

_APPLIED = Outcome.APPLIED


def outcomes(
    ops: Sequence[Put | Delete],
    texts: dict[str, str],
    applied: set[str] | None,
    stored: dict[str, Snapshot],
    refused: Mapping[str, int] | None = None,
) -> list[WriteResult]:
    """Results in the order of ``ops``.

    ``applied``: names of puts known written (``None``: all of them); ``stored``: the read-back,
    in the write's transaction, of every other operation's name; ``texts``: each put's JSON;
    ``refused``: the stored fence of each name whose fenced op was refused (not written).
    """
    if applied is None and not stored and not refused:  # all puts written: the common case
        # `current` passed although it is the default: a call with every argument given takes
        # CPython's faster path (about 0.1 us per result).
        return [WriteResult(op, _APPLIED, None) for op in ops]
    refused = refused or {}
    return [_outcome(op, applied, stored.get(op.name), texts, refused) for op in ops]


def _outcome(
    op: Put | Delete,
    applied: set[str] | None,
    stored: Snapshot | None,
    texts: dict[str, str],
    refused: Mapping[str, int],
) -> WriteResult:
    fence = refused.get(op.name)
    if fence is not None:
        return WriteResult(op, Outcome.FENCED, stored, fence)
    if isinstance(op, Put):
        if applied is None or op.name in applied:
            return WriteResult(op, _APPLIED)
        # Equal version and data means this put is what is stored (written now, or an
        # idempotent retry); anything else is a conflict.
        if (
            stored is not None
            and stored.version == op.version
            and data_equal(stored.data, load_json(texts[op.name]))
        ):
            return WriteResult(op, _APPLIED)
        return WriteResult(op, Outcome.CONFLICT, stored)
    if stored is not None and stored.version > op.version:
        return WriteResult(op, Outcome.CONFLICT, stored)
    return WriteResult(op, _APPLIED)
