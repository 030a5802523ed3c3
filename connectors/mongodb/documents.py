"""Record snapshots as MongoDB documents, and back (pure functions, no I/O).

One document per record, ``_id`` the full record name::

    {"_id": "user/42", "collection": "user", "version": Int64(7),
     "data": {...native...}, "updated_at": ISODate(...)}

A fenced write adds ``"fence": Int64(f)`` (the highest fence applied to the name), and a fenced
delete leaves a tombstone in place of the record, ``{"_id": "user/42", "tombstone": true,
"fence": Int64(f)}``: no ``collection``, ``version`` or ``data``, so it is never a record.
Reads select ``LIVE`` documents only (no ``tombstone`` field).

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
    "LIVE",
    "MAX_NATIVE_DEPTH",
    "PROJECTION",
    "TOMBSTONE",
    "Encoded",
    "check_fence",
    "encode_put",
    "encode_tombstone",
    "is_native",
    "snapshot_of",
]

MAX_NATIVE_DEPTH = 90
"""Containers nested deeper than this inside ``data`` are stored as ``data_json``: MongoDB
refuses documents nested more than 100 levels, and the record document adds a level."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

PROJECTION = {"_id": 1, "version": 1, "data": 1, "data_json": 1}
"""The fields a snapshot is read from."""

TOMBSTONE = "tombstone"
"""The field (``true``) that marks a tombstone: what a fenced delete leaves to keep the fence."""

LIVE: dict[str, Any] = {TOMBSTONE: {"$exists": False}}
"""The filter term of every read: records, not tombstones (data teams use it too)."""


def is_native(data: Any) -> bool:
    """True if ``data`` is JSON that BSON holds faithfully as a native document.

    One walk that also validates: ``False`` for anything it does not vouch for (not JSON, a
    lone surrogate, a subclass, a cycle past the depth limit, ...), and the caller then
    serialises the data with :func:`dump_json`, which refuses what is not JSON.
    """
    kind = data.__class__
    return (kind is dict or kind is list) and _native(data, 1)


def _native(data: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int) -> bool:
    if depth > MAX_NATIVE_DEPTH:
        return False
    if data.__class__ is dict:
        items: Any = data.items()
    else:
        items = ((None, value) for value in data)
    for key, value in items:
        if key is not None and (
            key.__class__ is not str
            or not key
            or key[0] == "$"
            or "." in key
            or "\0" in key
            or not (key.isascii() or _utf8(key))
        ):
            return False
        kind = value.__class__
        if kind is str:
            if not (value.isascii() or _utf8(value)):
                return False
        elif kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                return False
        elif kind is float:
            if value - value != 0.0:  # NaN or infinite: not JSON
                return False
        elif kind is dict or kind is list or kind is tuple:
            if not _native(value, depth + 1):
                return False
        elif value is not None and kind is not bool:
            return False
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Encoded:
    """A put's stored document, and its JSON text (for telling a retry from a conflict)."""

    __slots__ = ("_text", "data", "document")

    def __init__(self, document: dict[str, Any], data: JSON, text: str | None) -> None:
        self.document = document
        self.data = data
        self._text = text

    @property
    def text(self) -> str:
        """The data's JSON text, made when first needed (a conflict), if not made already."""
        if self._text is None:
            self._text = dump_json(self.data)
        return self._text


def check_fence(name: str, fence: object) -> int:
    """``fence`` if it is an integer in 0..2**63-1 (it is stored as int64), else
    ``StorageRejected``."""
    if type(fence) is not int or not 0 <= fence <= _INT64_MAX:
        raise StorageRejected(f"fence {fence!r} of {name!r} is not an integer in 0..2**63-1")
    return fence


def encode_put(
    name: str,
    version: int,
    data: JSON,
    now: datetime,
    int64: type[int],
    fence: int | None = None,
) -> Encoded:
    """The document for ``Put(name, version, data, fence=fence)``; ``StorageRejected`` for data
    that is not JSON, text that is not valid UTF-8 (lone surrogates), or a version or fence
    outside int64.

    ``int64`` is ``bson.Int64``: versions and fences are stored as 64-bit integers whatever their
    size, so their BSON type never changes between writes of one record (and they compare
    exactly, as integers).
    """
    if not (name.isascii() or _utf8(name)):
        raise StorageRejected(f"record name {name!r} is not valid unicode (a lone surrogate?)")
    if not 0 <= version <= _INT64_MAX:
        raise StorageRejected(f"version {version} of {name!r} is outside 0..2**63-1")
    document: dict[str, Any] = {
        "_id": name,
        "collection": collection_of(name),
        "version": int64(version),
    }
    if fence is not None:
        document["fence"] = int64(check_fence(name, fence))
    if is_native(data):
        document["data"] = data
        document["updated_at"] = now
        return Encoded(document, data, None)
    text = dump_json(data)  # StorageRejected for NaN, sets, objects, cycles
    if not (text.isascii() or _utf8(text)):
        raise StorageRejected(f"record data of {name!r} is not valid unicode (a lone surrogate?)")
    document["data"] = None
    document["data_json"] = text
    document["updated_at"] = now
    return Encoded(document, data, text)


def encode_tombstone(name: str, fence: int, int64: type[int]) -> dict[str, Any]:
    """The tombstone a fenced delete leaves: the name and its fence, nothing of a record."""
    if not (name.isascii() or _utf8(name)):
        raise StorageRejected(f"record name {name!r} is not valid unicode (a lone surrogate?)")
    return {"_id": name, TOMBSTONE: True, "fence": int64(check_fence(name, fence))}


def snapshot_of(document: dict[str, Any]) -> Snapshot:
    """The snapshot a stored document holds."""
    text = document.get("data_json")
    data: JSON = load_json(text) if isinstance(text, str) else document["data"]
    return Snapshot(document["_id"], int(document["version"]), data)
