"""The stored document of a record, and back (pure: no driver, no I/O).

One document per record in one table::

    {"id": sha256(name) hex,  "name": "user/42",  "collection": "user",
     "version": 7,  "version_key": "00000000000000000007",
     "data": {...native document...},  "data_json": "{...exact JSON text...}",
     "updated_at": <time>}

Invariants:

* ``id`` is derived from the name alone, so one name has exactly one document. RethinkDB primary
  keys hold at most 127 bytes and names may be longer; the full name lives in ``name``, which has
  a secondary index (lookups, prefix scans in name order).
* RethinkDB numbers are doubles. ``data_json`` (the JSON text as recordgate wrote it) and
  ``version_key`` (the version in decimal, zero-padded to 20 digits so string order is number
  order) are the sources of truth and round-trip exactly; ``data`` and ``version`` are the same
  values as native RethinkDB values for queries, exact while numbers stay within 2**53.
"""

from __future__ import annotations

import hashlib
from typing import Any

from connectors._common import dump_json, load_json
from connectors.base import Snapshot, StorageRejected, collection_of

__all__ = [
    "MAX_VERSION",
    "RESERVED_KEY",
    "check_version",
    "document_fields",
    "record_id",
    "snapshot_of",
    "version_key",
]

VERSION_DIGITS = 20
MAX_VERSION = 10**VERSION_DIGITS - 1
"""The largest version a ``version_key`` holds (above 2**64)."""

RESERVED_KEY = "$reql_type$"
"""RethinkDB reads an object with this key as a pseudo-type (time, binary, ...), not as data."""
_RESERVED_TOKEN = f'"{RESERVED_KEY}"'


def record_id(name: str) -> str:
    """The primary key of a record: 64 hex digits, whatever the length of the name."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def check_version(version: object) -> int:
    if type(version) is not int or not 0 <= version <= MAX_VERSION:
        raise StorageRejected(f"version must be an integer in 0..{MAX_VERSION}, got {version!r}")
    return version


def version_key(version: int) -> str:
    return str(check_version(version)).zfill(VERSION_DIGITS)


def document_fields(name: str, version: int, text: str) -> str:
    """The document (without ``updated_at``) as JSON text, ``text`` being the data's JSON.

    The text is built directly (no second encoding pass over the data): ``data`` is ``text``
    itself, ``data_json`` is ``text`` as a JSON string.
    """
    if _RESERVED_TOKEN in text and _has_reserved_key(load_json(text)):
        raise StorageRejected(
            f"record {name!r}: RethinkDB reserves the object key {RESERVED_KEY!r} for its own types"
        )
    head = dump_json(
        {
            "id": record_id(name),
            "name": name,
            "collection": collection_of(name),
            "version": version,
            "version_key": version_key(version),
        }
    )
    return f'{head[:-1]},"data":{text},"data_json":{dump_json([text])[1:-1]}}}'


def snapshot_of(doc: dict[str, Any]) -> Snapshot:
    """The snapshot a stored document holds (from its exact fields)."""
    return Snapshot(doc["name"], int(doc["version_key"]), load_json(doc["data_json"]))


def _has_reserved_key(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if RESERVED_KEY in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
