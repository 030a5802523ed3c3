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
* Bounded: a record's ``size`` (its JSON length) is estimated per write from lengths already
  known (the message's JSON text, what a path padded or replaced) and stays within
  ``WriteLimits.max_size``. Only when the estimate passes the limit is the record serialised to
  measure it exactly (at most once per write), so the common write never walks the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidData, LimitExceeded
from ..protocol import Message, RecordAction, Topic, encode, payload
from ..protocol.codec import encode_change
from ..store import Record
from .messages import dumps, routed_error, snapshot
from .paths import MAX_INDEX_GAP, MAX_TOKENS, Owned, Token, parse_path, patch

__all__ = [
    "UPSERTS",
    "WRITES",
    "Change",
    "WriteLimits",
    "apply",
    "broadcast",
    "broadcast_frame",
    "json_size",
    "parse_change",
]

R = RecordAction
WRITES = frozenset({R.UPDATE, R.PATCH, R.ERASE, R.PATCH_MULTI, R.CREATEANDUPDATE, R.CREATEANDPATCH})
UPSERTS = frozenset({R.CREATEANDUPDATE, R.CREATEANDPATCH})
_PATHED = frozenset({R.ERASE, R.PATCH, R.CREATEANDPATCH})
"""The writes that carry a path."""
# Read on every write: an enum member read from its class costs ~1,000 instructions on
# Python 3.11, a module global ~40 (as in ``gateway.rpc``).
_PATCH, _ERASE, _UPDATE, _PATCH_MULTI = R.PATCH, R.ERASE, R.UPDATE, R.PATCH_MULTI

Change = Callable[[Any, int], tuple[Any, int]]
"""A validated write: (current data, its size) -> (new data, its estimated size). Raises
``InvalidData`` if it cannot apply (``LimitExceeded`` if the result would be too large)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteLimits:
    """What one write may do (``limits.*`` and ``server.max_json_depth`` in the configuration)."""

    max_size: int = 1 << 20
    max_path_depth: int = MAX_TOKENS
    max_array_index: int = MAX_INDEX_GAP
    max_patch_entries: int = 1000
    max_json_depth: int = payload.DEFAULT_MAX_DEPTH
    refuse_nul: bool = False
    """The storage cannot hold U+0000 (``connectors.base.NUL``): refuse it in name, path, data."""


_DEFAULT_LIMITS = WriteLimits()


def json_size(data: Any) -> int:
    """The exact length of ``data``'s JSON text: a walk of the whole value, so called rarely."""
    return len(dumps(data))


def parse_change(msg: Message, limits: WriteLimits | None = None) -> Change:
    """Validate ``msg`` up front (JSON, paths) and return how it changes the data.

    The JSON rules are ``payload.loads``'s; ``limits.max_json_depth`` bounds the nesting of the
    record the write produces: a PATCH's value sits as many containers deep as its path has
    tokens.
    """
    limits = limits or _DEFAULT_LIMITS
    if limits.refuse_nul:
        payload.refuse_nul(msg.data, msg.name, msg.path)
    max_depth = limits.max_json_depth
    action = msg.action
    if action in _PATHED:
        tokens = _path(msg.path, limits)
        erase = action == _ERASE
        if erase and len(tokens) > max_depth:  # an erase creates the containers on its path
            raise payload.refuse("too_deep", f"path is deeper than {max_depth}")
        value = (
            None if erase else payload.loads(msg.data, max_depth=max_depth, at_depth=len(tokens))
        )
        text = 0 if erase else len(msg.data or "")

        def change(data: Any, size: int) -> tuple[Any, int]:
            new, growth = patch(data, tokens, value, erase=erase)
            return new, size + growth + text

        return change
    if msg.path is not None:  # the reference would patch; no client sends this
        raise InvalidData("a whole-record write carries no path")
    if action == _PATCH_MULTI:
        # The list and entry around each value add 2 levels, the shortest path adds 1: at -1 the
        # whole is refused only if no entry could fit; each entry is checked exactly below.
        value = payload.loads(msg.data, max_depth=max_depth, at_depth=-1)
        return _patch_multi(value, len(msg.data or ""), limits)
    value = payload.loads(msg.data, max_depth=max_depth)
    if not isinstance(value, dict | list):
        raise InvalidData("record data must be a JSON object or array")
    size = len(msg.data or "")
    return lambda data, _: (value, size)


def apply(
    msg: Message, name: str, change: Change, record: Record | None, *, max_size: int = 1 << 20
) -> Record | Message:
    """The snapshot after write ``msg`` on ``name``'s ``record``, or the reply refusing it:
    RECORD_UPDATE_ERROR for a missing record (unless CREATEAND*), INVALID_VERSION for a version
    from the future, VERSION_EXISTS (with the current snapshot) for one already taken.

    Raises ``InvalidData`` if ``change`` cannot apply to the current data, ``LimitExceeded``
    if the record would pass ``max_size`` bytes of JSON.
    """
    if record is None:
        if msg.action not in UPSERTS:
            return routed_error(msg, R.RECORD_UPDATE_ERROR, name)
        record = Record(name, 0, {}, 2)  # what CREATE would make; stored only with this write
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
    data, size = change(record.data, record.size or json_size(record.data))
    if size > max_size:
        size = _within(data, max_size)
    return Record(name, version, data, size)


def _within(data: Any, max_size: int) -> int:
    """The exact size of ``data`` whose estimate passed ``max_size``; raises if it is over."""
    size = json_size(data)
    if size > max_size:
        raise LimitExceeded(
            "limits.max_record_size", f"the record would hold {size} bytes, over {max_size}"
        )
    return size


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


def broadcast_frame(msg: Message, new: Record) -> bytes:
    """``encode(broadcast(msg, new))``, without building the message: once per write."""
    action = msg.action
    if action == _PATCH_MULTI:
        return encode(broadcast(msg, new))
    if msg.path is None:
        return encode_change(_UPDATE, new.name, new.version, msg.data, None)
    data = None if action == _ERASE else msg.data
    return encode_change(_PATCH, new.name, new.version, data, msg.path)


def _as_sent(msg: Message) -> int:
    """``originalAction`` as the reference reports it: writes are PATCH or UPDATE by path."""
    if msg.action == R.PATCH_MULTI:
        return R.PATCH_MULTI
    return R.PATCH if msg.path is not None else R.UPDATE


_PATHS: dict[tuple[str, int, int], tuple[Token, ...]] = {}
"""Paths parsed lately, by (path, depth limit, index limit): clients write the same few paths
over and over. The tokens are an immutable tuple, so sharing them is safe."""
MAX_PATHS_CACHED = 1024


def _path(path: str | None, limits: WriteLimits) -> tuple[Token, ...]:
    if path is None:
        return parse_path(path)  # refused
    key = (path, limits.max_path_depth, limits.max_array_index)
    tokens = _PATHS.get(key)
    if tokens is None:
        tokens = parse_path(path, max_depth=key[1], max_index=key[2])  # raises if refused
        if len(_PATHS) >= MAX_PATHS_CACHED:
            _PATHS.clear()  # a client writing ever new paths: start over, bounded
        _PATHS[key] = tokens
    return tokens


def _patch_multi(value: Any, text: int, limits: WriteLimits) -> Change:
    """PATCH_MULTI data: ``[{"path": str, "data": json}, ...]``, all applied as one write."""
    if not isinstance(value, list) or not value:
        raise InvalidData("PATCH_MULTI data must be a non-empty list of {path, data}")
    if len(value) > limits.max_patch_entries:
        raise LimitExceeded(
            "limits.max_patch_entries", f"PATCH_MULTI has more than {limits.max_patch_entries}"
        )
    steps: list[tuple[tuple[Token, ...], Any, bool]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise InvalidData("PATCH_MULTI entries must be objects with a string path")
        if set(item) - {"path", "data"}:
            raise InvalidData("PATCH_MULTI entries hold only path and data")
        tokens = _path(item["path"], limits)
        if len(tokens) + payload.depth(item.get("data")) > limits.max_json_depth:
            raise payload.refuse("too_deep", f"data is nested deeper than {limits.max_json_depth}")
        steps.append((tokens, item.get("data"), "data" not in item))
    max_size = limits.max_size

    def change(data: Any, size: int) -> tuple[Any, int]:
        owned: Owned = {}  # each container is copied once for the whole write
        size += text  # every value's text is within the message's
        measured = False
        for tokens, new, erase in steps:
            data, growth = patch(data, tokens, new, erase=erase, owned=owned)
            size += growth
            if size > max_size:  # stop before padding piles up; measure at most once
                if measured:
                    raise LimitExceeded(
                        "limits.max_record_size", f"the record would pass {max_size} bytes"
                    )
                size, measured = _within(data, max_size) + text, True
        return data, size

    return change
