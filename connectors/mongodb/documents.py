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

PROJECTION = {"_id": 1, "version": 1, "data": 1, "data_json": 1}
"""The fields a snapshot is read from."""


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


def encode_put(name: str, version: int, data: JSON, now: datetime, int64: type[int]) -> Encoded:
    """The document for ``Put(name, version, data)``; ``StorageRejected`` for data that is not
    JSON, text that is not valid UTF-8 (lone surrogates) or a version outside int64.

    ``int64`` is ``bson.Int64``: the version is stored as a 64-bit integer whatever its size, so
    its BSON type never changes between writes of one record.
    """
    if not (name.isascii() or _utf8(name)):
        raise StorageRejected(f"record name {name!r} is not valid unicode (a lone surrogate?)")
    if not 0 <= version <= _INT64_MAX:
        raise StorageRejected(f"version {version} of {name!r} is outside 0..2**63-1")
    if is_native(data):
        document = {
            "_id": name,
            "collection": collection_of(name),
            "version": int64(version),
            "data": data,
            "updated_at": now,
        }
        return Encoded(document, data, None)
    text = dump_json(data)  # StorageRejected for NaN, sets, objects, cycles
    if not (text.isascii() or _utf8(text)):
        raise StorageRejected(f"record data of {name!r} is not valid unicode (a lone surrogate?)")
    document = {
        "_id": name,
        "collection": collection_of(name),
        "version": int64(version),
        "data": None,
        "data_json": text,
        "updated_at": now,
    }
    return Encoded(document, data, text)


def snapshot_of(document: dict[str, Any]) -> Snapshot:
    """The snapshot a stored document holds."""
    text = document.get("data_json")
    data: JSON = load_json(text) if isinstance(text, str) else document["data"]
    return Snapshot(document["_id"], int(document["version"]), data)
