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
* ``data`` is ``null`` when the data holds an object key ``$reql_type$`` anywhere: RethinkDB
  would read such an object as one of its own types (a time, binary, geometry; an unknown or
  malformed one is refused by the server or breaks the driver's reads), not as the data it is.
  Such records are stored as faithfully as any other through ``data_json``; a record's data is
  an object or array, so ``data: null`` marks them for queries.
* A fenced write adds ``fence_key`` (the highest fence applied to the name, zero-padded like
  ``version_key``). A fenced delete (and an unfenced delete of a record with a fence) leaves a
  tombstone under the record's ``id``::

      {"id": sha256(name) hex, "name": "user/42", "tombstone": true,
       "fence_key": "00000000000000000012"}

  No ``collection``, version or data. Every read skips documents with ``tombstone``. (Without
  ``name`` the ``name`` index would skip tombstones by itself on RethinkDB; the stand-in's
  ``between`` on an index breaks the connection at a document without the field.)
"""

from __future__ import annotations

import hashlib
from typing import Any

from connectors._common import dump_json, load_json
from connectors.base import Snapshot, StorageRejected, collection_of

__all__ = [
    "MAX_FENCE",
    "MAX_VERSION",
    "RESERVED_KEY",
    "TOMBSTONE",
    "check_version",
    "document_fields",
    "fence_key",
    "is_record",
    "live",
    "record_id",
    "snapshot_of",
    "tombstone_fields",
    "version_key",
]

VERSION_DIGITS = 20
MAX_VERSION = 10**VERSION_DIGITS - 1
"""The largest version a ``version_key`` holds (above 2**64)."""

TOMBSTONE = "tombstone"
"""The field (``true``) marking a tombstone."""

MAX_FENCE = 2**63 - 1
"""Fences are the contract's exact integers 0..2**63-1 (their key has the version's width)."""

RESERVED_KEY = "$reql_type$"
"""RethinkDB reads an object with this key as a pseudo-type (time, binary, ...), not as data:
data holding it is stored with ``data`` null (``data_json`` holds it)."""
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


def fence_key(fence: object) -> str:
    """The stored, exactly comparable form of a fence; ``StorageRejected`` outside 0..2**63-1."""
    if type(fence) is not int or not 0 <= fence <= MAX_FENCE:
        raise StorageRejected(f"fence must be an integer in 0..{MAX_FENCE}, got {fence!r}")
    return str(fence).zfill(VERSION_DIGITS)


def tombstone_fields(name: str, fence: int | None) -> str:
    """The tombstone of ``name`` as JSON text (without ``fence_key`` when ``fence`` is None: the
    write then carries over the stored one)."""
    fields: dict[str, object] = {"id": record_id(name), "name": name, TOMBSTONE: True}
    if fence is not None:
        fields["fence_key"] = fence_key(fence)
    return dump_json(fields)


def live(doc: Any) -> Any:
    """The ReQL filter of records (not tombstones): a function, since a dict ``filter`` breaks
    the asyncio driver on the stand-in."""
    return doc.has_fields(TOMBSTONE).not_()


def is_record(doc: dict[str, Any]) -> bool:
    """Whether a stored document (read with its ``tombstone`` field) is a record."""
    return TOMBSTONE not in doc


def document_fields(name: str, version: int, text: str, fence: int | None = None) -> str:
    """The document (without ``updated_at``) as JSON text, ``text`` being the data's JSON, with
    ``fence_key`` if ``fence`` is given.

    The text is built directly (no second encoding pass over the data): ``data`` is ``text``
    itself (``null`` if it holds ``RESERVED_KEY``), ``data_json`` is ``text`` as a JSON string.
    """
    native = text
    if _RESERVED_TOKEN in text and _has_reserved_key(load_json(text)):
        native = "null"  # the server would read it as pseudo-types; data_json keeps it
    fields: dict[str, object] = {
        "id": record_id(name),
        "name": name,
        "collection": collection_of(name),
        "version": version,
        "version_key": version_key(version),
    }
    if fence is not None:
        fields["fence_key"] = fence_key(fence)
    head = dump_json(fields)
    return f'{head[:-1]},"data":{native},"data_json":{dump_json([text])[1:-1]}}}'


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
