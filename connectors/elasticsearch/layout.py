"""The stored layout: one index, its explicit mapping, document ids and document bodies.

One index (option ``index``, default ``recordgate``) holds every record, one document each:

* ``name`` (``keyword``): the full record name; scans sort and page on it (UTF-8 byte order,
  which is code-point order).
* ``collection`` (``keyword``): the part of the name before the first ``/``.
* ``version`` (``long``): the record version, an exact integer in ``0 .. 2**63 - 1``.
* ``updated_at`` (``date``): when this version was written (UTC, milliseconds).
* ``data_json`` (``keyword``, neither indexed nor in doc values, so any length): the data's
  exact JSON text. The source of truth: reads decode it, so every JSON value round-trips.
* ``data`` (``object``, dynamic): the same data as a native document, for queries; strings are
  ``keyword`` fields (exact values, indexed up to 8191 characters). Leaf type
  clashes between records (``age: 30`` here, ``age: "old"`` there) are kept out of the index by
  ``index.mapping.ignore_malformed`` (listed in the document's ``_ignored``) instead of refusing
  the record. Data that cannot be mapped at all (an empty or dotted key Elasticsearch refuses,
  an object where another record has a number, a top-level array of mixed values, more fields
  than ``index.mapping.total_fields.limit``) is stored without ``data`` and with
  ``searchable: false``; ``data_json`` holds it all the same.
* ``searchable`` (``boolean``): whether ``data`` is there.
* ``fence`` (``long``): the highest fence applied to the name (only for names written with a
  fence: a cluster's writes, see ``connectors/base.py``).

A fenced name that is deleted keeps its fence in a *tombstone* document under the same id:
``tombstone`` (``keyword``, the deleted name), ``fence`` and ``updated_at``, and none of
``name``, ``collection``, ``version``, ``data``, so a query on any of those never matches one;
reads, scans and the raw reader skip them, and a query with no such condition (``match_all``)
adds ``{"exists": {"field": "name"}}`` to see live records only. ``open`` adds the two fields
to the mapping of an index made before they existed.

Document ids: the name itself when it is 1 to 512 UTF-8 bytes long (Elasticsearch's limit) and
does not start with ``~``; otherwise ``~`` and the SHA-256 of the name in hex. The two forms
cannot collide, and a data team can ``GET index/_doc/<name>`` for ordinary names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from connectors.base import JSON, Snapshot, collection_of

__all__ = [
    "MAX_VERSION",
    "SOURCE_FIELDS",
    "check_index_name",
    "doc_id",
    "document_line",
    "index_body",
    "snapshot_from_source",
    "tombstone_line",
]

MAX_VERSION = 2**63 - 1
"""The largest value of an Elasticsearch ``long``."""

MAX_ID_BYTES = 512
MAX_KEYWORD_CHARS = 8191
"""Longest string of ``data`` that is indexed: Lucene's 32766-byte term limit in 4-byte chars."""
MAX_INDEX_NAME_BYTES = 255
_INDEX_NAME_FORBIDDEN = frozenset('\\/*?"<>| ,#:')

SOURCE_FIELDS = ["name", "version", "data_json"]
"""What reads fetch of ``_source``: never the ``data`` copy."""

STATE_FIELDS = ["name", "version", "fence", "tombstone"]
"""What a write reads of ``_source`` to decide (and ``data_json`` when the data matters)."""

LIVE_RECORDS: dict[str, object] = {"exists": {"field": "name"}}
"""The query clause matching live records only (no tombstones)."""

_encode_string = json.encoder.encode_basestring  # ensure_ascii=False, as dump_json


def check_index_name(index: str) -> str:
    """``index`` if Elasticsearch accepts it as an index name; ``ValueError`` naming the rule.

    Not lowercased or otherwise repaired: the operator names the index data teams will query.
    """
    if not isinstance(index, str) or not index:
        raise ValueError("option 'index' must be a non-empty string")
    problems = []
    if index != index.lower():
        problems.append("must be lowercase")
    if bad := sorted(set(index) & _INDEX_NAME_FORBIDDEN):
        problems.append(f"must not contain {' '.join(repr(c) for c in bad)}")
    if index[0] in "-_+":
        problems.append("must not start with '-', '_' or '+'")
    if index in (".", ".."):
        problems.append("must not be '.' or '..'")
    if len(index.encode()) > MAX_INDEX_NAME_BYTES:
        problems.append(f"must be at most {MAX_INDEX_NAME_BYTES} bytes long")
    if problems:
        rules = "; ".join(problems)
        raise ValueError(f"option 'index' {index!r} is not a valid index name: {rules}")
    return index


def doc_id(name: str) -> str:
    """The document id of a record name (see the module docstring)."""
    raw = name.encode("utf-8", "surrogatepass")
    if 0 < len(raw) <= MAX_ID_BYTES and not name.startswith("~"):
        return name
    return "~" + hashlib.sha256(raw).hexdigest()


def index_body(*, fields_limit: int, shards: int | None, replicas: int | None) -> dict[str, Any]:
    """The settings and explicit mapping ``open()`` creates the index with."""
    settings: dict[str, Any] = {
        "mapping": {"ignore_malformed": True, "total_fields": {"limit": fields_limit}},
    }
    if shards is not None:
        settings["number_of_shards"] = shards
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    mappings = {
        "dynamic": "strict",  # only the fields below at the top level
        "date_detection": False,  # strings in data stay strings, whatever they look like
        # Strings in data are keywords (exact values: term, range, sort, aggregations), one
        # field each rather than text plus a keyword sub-field; longer ones stay in _source only.
        "dynamic_templates": [
            {
                "data_strings": {
                    "path_match": "data.*",
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": MAX_KEYWORD_CHARS},
                }
            }
        ],
        "properties": {
            "name": {"type": "keyword"},
            "collection": {"type": "keyword"},
            "version": {"type": "long"},
            "updated_at": {"type": "date"},
            "data_json": {"type": "keyword", "index": False, "doc_values": False},
            "searchable": {"type": "boolean"},
            "data": {"type": "object", "dynamic": True},
            **FENCE_FIELDS,
        },
    }
    return {"settings": {"index": settings}, "mappings": mappings}


FENCE_FIELDS: dict[str, dict[str, str]] = {
    "fence": {"type": "long"},
    "tombstone": {"type": "keyword"},
}
"""Added to an existing index's mapping by ``open`` if missing (made before fencing)."""

EXPECTED_TYPES = {
    "name": "keyword",
    "collection": "keyword",
    "version": "long",
    "updated_at": "date",
    "data_json": "keyword",
    "searchable": "boolean",
    "fence": "long",
    "tombstone": "keyword",
}
"""Field types an existing index must have for the connector to use it."""


def document_line(
    name: str, version: int, text: str, updated_at: str, searchable: bool, fence: int | None = None
) -> str:
    """The bulk source line of one record; ``text`` is the data's JSON (spliced in verbatim as
    ``data``, encoded as a string for ``data_json``)."""
    head = (
        f'{{"name":{_encode_string(name)},"collection":{_encode_string(collection_of(name))},'
        f'"version":{version},"updated_at":"{updated_at}","data_json":{_encode_string(text)}'
    )
    if fence is not None:
        head += f',"fence":{fence}'
    if searchable:
        return f'{head},"searchable":true,"data":{text}}}'
    return f'{head},"searchable":false}}'


def tombstone_line(name: str, fence: int, updated_at: str) -> str:
    """The bulk source line of a deleted name's tombstone."""
    return f'{{"tombstone":{_encode_string(name)},"fence":{fence},"updated_at":"{updated_at}"}}'


def snapshot_from_source(name: str, source: dict[str, Any]) -> Snapshot | None:
    """The snapshot in a document's ``_source`` (``SOURCE_FIELDS``), or ``None`` if the document
    is not this record's."""
    if source.get("name") != name:
        return None
    data: JSON = json.loads(source["data_json"])
    return Snapshot(name, int(source["version"]), data)
