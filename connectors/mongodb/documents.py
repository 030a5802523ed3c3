"""Record snapshots as MongoDB documents, and back (pure functions, no I/O).

One document per record, ``_id`` the full record name::

    {"_id": "user/42", "collection": "user", "version": Int64(7),
     "data": {...native...}, "updated_at": ISODate(...)}

Invariant: reading a document gives back exactly the JSON that was written. ``data`` is the
native document whenever BSON holds it faithfully. When it cannot, ``data`` is ``null`` and
``data_json`` holds the exact JSON text instead; that is the case for data with

* an object key that is empty, starts with ``$``, contains ``.`` or NUL (queries cannot address
  such a field, or it means an operator or a DBRef to MongoDB, or BSON cannot hold it), or is
  not a string (JSON turns it into one);
* an integer outside int64 (BSON has no bigger integer);
* nesting deeper than ``MAX_NATIVE_DEPTH`` (MongoDB refuses documents nested over 100 levels).

Key order, ints vs floats vs booleans, ``-0.0``, NUL in strings and unicode are native BSON and
round-trip as they are. Integers come back as ``int`` (the codec maps BSON int64 to ``int``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors._common import dump_json, load_json
from connectors.base import JSON, Snapshot, StorageRejected, collection_of

__all__ = [
    "MAX_NATIVE_DEPTH",
    "PROJECTION",
    "Encoded",
    "encode_put",
    "is_native",
    "snapshot_of",
]

MAX_NATIVE_DEPTH = 90
"""Containers nested deeper than this inside ``data`` are stored as ``data_json``: MongoDB
refuses documents nested more than 100 levels, and the record document adds a level."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SCALARS = frozenset({str, float, bool, type(None)})

PROJECTION = {"_id": 1, "version": 1, "data": 1, "data_json": 1}
"""The fields a snapshot is read from."""


def is_native(data: Any, depth: int = 1) -> bool:
    """True if BSON holds ``data`` (already known to be JSON) faithfully as a native document."""
    if depth > MAX_NATIVE_DEPTH:
        return False
    if isinstance(data, dict):
        for key, value in data.items():
            if key.__class__ is not str or not key or key[0] == "$" or "." in key or "\0" in key:
                return False
            kind = value.__class__
            if kind in _SCALARS:
                continue
            if kind is int:
                if not _INT64_MIN <= value <= _INT64_MAX:
                    return False
            elif not is_native(value, depth + 1):
                return False
        return True
    if isinstance(data, list | tuple):
        for value in data:
            kind = value.__class__
            if kind in _SCALARS:
                continue
            if kind is int:
                if not _INT64_MIN <= value <= _INT64_MAX:
                    return False
            elif not is_native(value, depth + 1):
                return False
        return True
    if isinstance(data, int) and not isinstance(data, bool):
        return _INT64_MIN <= data <= _INT64_MAX
    return True  # a str/float/bool/None subclass: BSON stores its value


class Encoded:
    """A put's stored document, and its JSON text (for telling a retry from a conflict)."""

    __slots__ = ("document", "text")

    def __init__(self, document: dict[str, Any], text: str) -> None:
        self.document = document
        self.text = text


def encode_put(name: str, version: int, data: JSON, now: datetime, int64: type[int]) -> Encoded:
    """The document for ``Put(name, version, data)``; ``StorageRejected`` for data that is not
    JSON, text that is not valid UTF-8 (lone surrogates) or a version outside int64.

    ``int64`` is ``bson.Int64``: the version is stored as a 64-bit integer whatever its size, so
    its BSON type never changes between writes of one record.
    """
    text = dump_json(data)  # StorageRejected for NaN, sets, objects, cycles
    _check_utf8(text, "record data")
    _check_utf8(name, "record name")
    if not 0 <= version <= _INT64_MAX:
        raise StorageRejected(f"version {version} of {name!r} is outside 0..2**63-1")
    document: dict[str, Any] = {
        "_id": name,
        "collection": collection_of(name),
        "version": int64(version),
        "data": data,
        "updated_at": now,
    }
    if not is_native(data):
        document["data"] = None
        document["data_json"] = text
    return Encoded(document, text)


def snapshot_of(document: dict[str, Any]) -> Snapshot:
    """The snapshot a stored document holds."""
    text = document.get("data_json")
    data: JSON = load_json(text) if isinstance(text, str) else document["data"]
    return Snapshot(document["_id"], int(document["version"]), data)


def _check_utf8(text: str, what: str) -> None:
    if text.isascii():
        return
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise StorageRejected(f"{what} is not valid unicode (a lone surrogate?): {exc}") from exc
