"""Writes, pure: validated up front, the version rule, the new snapshot and its broadcast.

The writes are UPDATE, PATCH, ERASE, PATCH_MULTI, CREATEANDUPDATE and CREATEANDPATCH. Nothing
here sends, stores or waits: the handler does that with what these functions return.

* A write is validated before it waits for anything (JSON, paths), so a bad one is refused
  without touching the record.
* A write with version ``v`` applies iff ``v == current + 1``, or ``v == -1`` (forced: ``v :=
  current + 1``); an absent version is 0 (proto3). A CREATEAND* write to a missing record
  applies on ``Record(name, 0, {})``, what CREATE would make.
* An applied write makes a new immutable ``Record``; patches copy only the containers along the
  path, so earlier snapshots stay intact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import InvalidData
from ..protocol import Message, RecordAction, Topic, payload
from ..store import Record
from .messages import dumps, routed_error, snapshot
from .paths import Token, erase_path, parse_path, set_path

__all__ = ["WRITES", "Change", "apply", "broadcast", "parse_change"]

R = RecordAction
WRITES = frozenset({R.UPDATE, R.PATCH, R.ERASE, R.PATCH_MULTI, R.CREATEANDUPDATE, R.CREATEANDPATCH})
_UPSERTS = frozenset({R.CREATEANDUPDATE, R.CREATEANDPATCH})

Change = Callable[[Any], Any]
"""A validated write: current data -> new data (raises ``InvalidData`` if it cannot apply)."""


def parse_change(msg: Message, max_depth: int = payload.DEFAULT_MAX_DEPTH) -> Change:
    """Validate ``msg`` up front (JSON, paths) and return how it changes the data.

    The JSON rules are ``payload.loads``'s; ``max_depth`` bounds the nesting of the record the
    write produces: a PATCH's value sits as many containers deep as its path has tokens.
    """
    action = msg.action
    if action == R.ERASE:
        tokens = parse_path(msg.path)
        return lambda data: erase_path(data, tokens)
    if action == R.PATCH or action == R.CREATEANDPATCH:
        tokens = parse_path(msg.path)
        value = payload.loads(msg.data, max_depth=max_depth, at_depth=len(tokens))
        return lambda data: set_path(data, tokens, value)
    if msg.path is not None:  # the reference would patch; no client sends this
        raise InvalidData("a whole-record write carries no path")
    if action == R.PATCH_MULTI:
        # The list and entry around each value add 2 levels, the shortest path adds 1: at -1 the
        # whole is refused only if no entry could fit; each entry is checked exactly below.
        value = payload.loads(msg.data, max_depth=max_depth, at_depth=-1)
        return _patch_multi(value, max_depth)
    value = payload.loads(msg.data, max_depth=max_depth)
    if not isinstance(value, dict | list):
        raise InvalidData("record data must be a JSON object or array")
    return lambda data: value


def apply(msg: Message, name: str, change: Change, record: Record | None) -> Record | Message:
    """The snapshot after write ``msg`` on ``name``'s ``record``, or the reply refusing it:
    RECORD_UPDATE_ERROR for a missing record (unless CREATEAND*), INVALID_VERSION for a version
    from the future, VERSION_EXISTS (with the current snapshot) for one already taken.

    Raises ``InvalidData`` if ``change`` cannot apply to the current data.
    """
    if record is None:
        if msg.action not in _UPSERTS:
            return routed_error(msg, R.RECORD_UPDATE_ERROR, name)
        record = Record(name, 0, {})  # what CREATE would make; stored only with this write
    current = record.version
    version = msg.version if msg.version is not None else 0
    if version == -1:
        version = current + 1
    elif version > current + 1:
        return Message(
            Topic.RECORD,
            R.INVALID_VERSION,
            name=name,
            version=current,
            data=msg.data,
            path=msg.path,
            original_action=_as_sent(msg),
            correlation_id=msg.correlation_id,
            is_write_ack=msg.is_write_ack,
            is_error=True,
        )
    elif version != current + 1:
        return Message(
            Topic.RECORD,
            R.VERSION_EXISTS,
            name=name,
            version=current,
            data=dumps(record.data),
            original_action=_as_sent(msg),
            correlation_id=msg.correlation_id,
            is_write_ack=msg.is_write_ack,
        )
    return Record(name, version, change(record.data))


def broadcast(msg: Message, new: Record) -> Message:
    """What subscribers get: the incoming JSON text as is, never re-serialised per peer."""
    action = msg.action
    if action == R.PATCH_MULTI:  # no JS client knows PATCH_MULTI: send the whole result
        return snapshot(R.UPDATE, new.name, new)
    if msg.path is None:
        return Message(Topic.RECORD, R.UPDATE, name=new.name, version=new.version, data=msg.data)
    # PATCH, CREATEANDPATCH and ERASE all go out as PATCH; an erase has no data.
    data = None if action == R.ERASE else msg.data
    return Message(
        Topic.RECORD, R.PATCH, name=new.name, version=new.version, path=msg.path, data=data
    )


def _as_sent(msg: Message) -> int:
    """``originalAction`` as the reference reports it: writes are PATCH or UPDATE by path."""
    if msg.action == R.PATCH_MULTI:
        return R.PATCH_MULTI
    return R.PATCH if msg.path is not None else R.UPDATE


def _patch_multi(value: Any, max_depth: int) -> Change:
    """PATCH_MULTI data: ``[{"path": str, "data": json}, ...]``, all applied as one write."""
    if not isinstance(value, list) or not value:
        raise InvalidData("PATCH_MULTI data must be a non-empty list of {path, data}")
    steps: list[tuple[tuple[Token, ...], Any, bool]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise InvalidData("PATCH_MULTI entries must be objects with a string path")
        if set(item) - {"path", "data"}:
            raise InvalidData("PATCH_MULTI entries hold only path and data")
        tokens = parse_path(item["path"])
        if len(tokens) + payload.depth(item.get("data")) > max_depth:
            raise payload.refuse("too_deep", f"data is nested deeper than {max_depth}")
        steps.append((tokens, item.get("data"), "data" not in item))

    def change(data: Any) -> Any:
        for tokens, new, erase in steps:
            data = erase_path(data, tokens) if erase else set_path(data, tokens, new)
        return data

    return change
