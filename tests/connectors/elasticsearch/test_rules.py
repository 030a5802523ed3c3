"""The Elasticsearch connector's pure rules: write decisions, bulk item verdicts, error
translation, index names, document ids, and the missing-driver message."""

from __future__ import annotations

import hashlib
import sys

import pytest

from connectors.base import (
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
    WriteResult,
)
from connectors.elasticsearch.errors import status_error, translate
from connectors.elasticsearch.layout import check_index_name, doc_id, document_line
from connectors.elasticsearch.outcomes import (
    Action,
    ItemVerdict,
    NeedData,
    Stored,
    decide,
    item_verdict,
)
from gateway.exceptions import DriverMissing

STORED = Stored(version=5, seq_no=11, primary_term=2, text='{"a":1,"b":[2]}')
CURRENT = Snapshot("r", 5, {"a": 1, "b": [2]})
BLIND = Stored(version=5, seq_no=11, primary_term=2)  # read without its data


def _applied(op: Put | Delete) -> WriteResult:
    return WriteResult(op, Outcome.APPLIED)


def _conflict(op: Put | Delete) -> WriteResult:
    return WriteResult(op, Outcome.CONFLICT, CURRENT)


@pytest.mark.parametrize(
    ("op", "stored", "expected"),
    [
        (Put("r", 1, {}), None, Action("create")),
        (Put("r", 6, {}), STORED, Action("index", 11, 2)),
        (Put("r", 6, {}), BLIND, Action("index", 11, 2)),
        (Put("r", 5, {"b": [2], "a": 1}), STORED, _applied(Put("r", 5, {"b": [2], "a": 1}))),
        (Put("r", 5, {"a": 2}), STORED, _conflict(Put("r", 5, {"a": 2}))),
        (Put("r", 5, {"a": 1.0, "b": [2]}), STORED, _conflict(Put("r", 5, {"a": 1.0, "b": [2]}))),
        (Put("r", 5, {"a": True, "b": [2]}), STORED, _conflict(Put("r", 5, {"a": True, "b": [2]}))),
        (Put("r", 4, {}), STORED, _conflict(Put("r", 4, {}))),
        (Put("r", 5, {}), BLIND, NeedData.TOKEN),
        (Put("r", 0, {}), BLIND, NeedData.TOKEN),
        (Delete("r", 1), None, _applied(Delete("r", 1))),
        (Delete("r", 5), BLIND, Action("delete", 11, 2)),
        (Delete("r", 9), BLIND, Action("delete", 11, 2)),
        (Delete("r", 4), BLIND, NeedData.TOKEN),
        (Delete("r", 4), STORED, _conflict(Delete("r", 4))),
    ],
)  # fmt: skip
def test_decide(op: Put | Delete, stored: Stored | None, expected: object) -> None:
    text = None
    if isinstance(op, Put):
        import json

        text = json.dumps(op.data, separators=(",", ":"))
    assert decide(op, stored, text) == expected


FENCED_AT_7 = Stored(5, 11, 2, '{"a":1,"b":[2]}', fence=7)
FENCED_BLIND = Stored(5, 11, 2, fence=7)
TOMBSTONE = Stored(None, 11, 2, fence=7)  # a deleted name's fence


def _fenced(op: Put | Delete, current: Snapshot | None = CURRENT) -> WriteResult:
    return WriteResult(op, Outcome.FENCED, current, fence=7)


@pytest.mark.parametrize(
    ("op", "stored", "expected"),
    [
        # Below the stored fence: refused, with the stored record (fetched if need be).
        (Put("r", 9, {}, fence=6), FENCED_AT_7, _fenced(Put("r", 9, {}, fence=6))),
        (Put("r", 9, {}, fence=6), FENCED_BLIND, NeedData.TOKEN),
        (Delete("r", 9, fence=0), FENCED_AT_7, _fenced(Delete("r", 9, fence=0))),
        (Put("r", 1, {}, fence=6), TOMBSTONE, _fenced(Put("r", 1, {}, fence=6), None)),
        (Delete("r", 1, fence=6), TOMBSTONE, _fenced(Delete("r", 1, fence=6), None)),
        # At or above it: the version rules, and the document carries the higher fence.
        (Put("r", 6, {}, fence=7), FENCED_BLIND, Action("index", 11, 2, fence=7)),
        (Put("r", 6, {}, fence=8), FENCED_BLIND, Action("index", 11, 2, fence=8)),
        (Put("r", 4, {}, fence=8), FENCED_AT_7, _conflict(Put("r", 4, {}, fence=8))),
        (Put("r", 1, {}, fence=3), None, Action("create", fence=3)),
        (Put("r", 1, {}, fence=7), TOMBSTONE, Action("index", 11, 2, fence=7)),
        (Put("r", 5, {"a": 1, "b": [2]}, fence=7), FENCED_AT_7,
         _applied(Put("r", 5, {"a": 1, "b": [2]}, fence=7))),
        # An idempotent retry with a higher fence raises only the fence.
        (Put("r", 5, {"b": [2], "a": 1}, fence=9), FENCED_AT_7,
         Action("update", 11, 2, "fence", 9)),
        (Put("r", 5, {"a": 1, "b": [2]}, fence=1), STORED, Action("update", 11, 2, "fence", 1)),
        # A fenced delete leaves a tombstone: over the record, over nothing, over a tombstone.
        (Delete("r", 5, fence=8), FENCED_BLIND, Action("index", 11, 2, "tombstone", 8)),
        (Delete("r", 5, fence=8), BLIND, Action("index", 11, 2, "tombstone", 8)),
        (Delete("r", 5, fence=8), None, Action("create", body="tombstone", fence=8)),
        (Delete("r", 5, fence=8), TOMBSTONE, Action("index", 11, 2, "tombstone", 8)),
        (Delete("r", 5, fence=7), TOMBSTONE, _applied(Delete("r", 5, fence=7))),
        (Delete("r", 4, fence=9), FENCED_AT_7, _conflict(Delete("r", 4, fence=9))),
        # Unfenced ops ignore fences and carry the stored one on.
        (Put("r", 6, {}), FENCED_BLIND, Action("index", 11, 2, fence=7)),
        (Put("r", 1, {}), TOMBSTONE, Action("index", 11, 2, fence=7)),
        (Put("r", 5, {"a": 1, "b": [2]}), FENCED_AT_7, _applied(Put("r", 5, {"a": 1, "b": [2]}))),
        (Delete("r", 5), FENCED_BLIND, Action("index", 11, 2, "tombstone", 7)),
        (Delete("r", 5), TOMBSTONE, _applied(Delete("r", 5))),
        (Delete("r", 4), FENCED_AT_7, _conflict(Delete("r", 4))),
    ],
)  # fmt: skip
def test_decide_with_fences(op: Put | Delete, stored: Stored | None, expected: object) -> None:
    test_decide(op, stored, expected)  # WriteResult equality includes the fence


@pytest.mark.parametrize(
    ("kind", "status", "searchable", "verdict"),
    [
        ("create", 201, True, ItemVerdict.APPLIED),
        ("index", 200, False, ItemVerdict.APPLIED),
        ("delete", 200, False, ItemVerdict.APPLIED),
        ("delete", 404, False, ItemVerdict.APPLIED),
        ("create", 409, True, ItemVerdict.REREAD),
        ("delete", 409, False, ItemVerdict.REREAD),
        ("index", 400, True, ItemVerdict.UNSEARCHABLE),
        ("index", 400, False, ItemVerdict.FAILED),  # already sent without data: a real refusal
        ("create", 404, True, ItemVerdict.FAILED),
        ("update", 409, False, ItemVerdict.REREAD),
        ("update", 404, False, ItemVerdict.REREAD),  # gone since read: read again
        ("update", 400, True, ItemVerdict.FAILED),
        ("index", 429, True, ItemVerdict.FAILED),
        ("index", 503, True, ItemVerdict.FAILED),
    ],
)
def test_item_verdict(kind: str, status: int, searchable: bool, verdict: ItemVerdict) -> None:
    assert item_verdict(kind, status, searchable) is verdict


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, StorageRejected),
        (413, StorageRejected),
        (401, StorageUnavailable),
        (403, StorageUnavailable),
        (404, StorageUnavailable),
        (406, StorageUnavailable),
        (429, StorageUnavailable),
        (500, StorageUnavailable),
        (503, StorageUnavailable),
        (408, StorageTimeout),
        (504, StorageTimeout),
    ],
)
def test_status_errors(status: int, error: type[Exception]) -> None:
    assert type(status_error(status, "x")) is error


def test_client_exceptions_are_translated() -> None:
    import elastic_transport
    from elasticsearch import ApiError, ConflictError

    meta = elastic_transport.ApiResponseMeta(429, "1.1", elastic_transport.HttpHeaders(), 0.1, None)  # type: ignore[arg-type]
    assert isinstance(translate(ApiError("busy", meta, {}), "w"), StorageUnavailable)
    conflict = elastic_transport.ApiResponseMeta(
        409, "1.1", elastic_transport.HttpHeaders(), 0.1, None
    )  # type: ignore[arg-type]
    assert isinstance(translate(ConflictError("c", conflict, {}), "w"), StorageRejected)
    assert isinstance(translate(elastic_transport.ConnectionTimeout("slow"), "w"), StorageTimeout)
    assert isinstance(
        translate(elastic_transport.ConnectionError("refused"), "w"), StorageUnavailable
    )
    assert isinstance(translate(ConnectionResetError(), "w"), StorageUnavailable)
    assert translate(KeyError("a connector bug"), "w") is None


@pytest.mark.parametrize(
    "name", ["recordgate", "records-2026", "a.b", "é", "x" * 255, "r_1", "rg+x"]
)
def test_valid_index_names(name: str) -> None:
    assert check_index_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Records", "a b", "a,b", "a#b", "a:b", "a*", "a?", 'a"', "a<", "a>", "a|", "a\\b",
     "a/b", "-x", "_x", "+x", ".", "..", "é" * 128],
)  # fmt: skip
def test_invalid_index_names(name: str) -> None:
    with pytest.raises(ValueError, match="index"):
        check_index_name(name)


def test_doc_ids() -> None:
    assert doc_id("user/42") == "user/42"
    assert doc_id("a" * 512) == "a" * 512
    long = "a" * 513
    assert doc_id(long) == "~" + hashlib.sha256(long.encode()).hexdigest()
    assert doc_id("é" * 256) == "é" * 256  # 512 bytes
    assert doc_id("é" * 257).startswith("~")
    assert doc_id("~x") == "~" + hashlib.sha256(b"~x").hexdigest()
    assert doc_id("") == "~" + hashlib.sha256(b"").hexdigest()
    hashed = doc_id(long)
    assert doc_id(hashed) != hashed  # a name that looks like a hashed id is hashed itself


def test_document_line_is_json_with_the_exact_text() -> None:
    import json

    text = '{"z":1,"a":[1.5e300,"\\u00e9\\n"]}'
    line = document_line('u/"q"', 3, text, "2026-01-01T00:00:00.000+00:00", True)
    doc = json.loads(line)
    assert doc["data_json"] == text and doc["data"] == json.loads(text)
    assert doc["name"] == 'u/"q"' and doc["collection"] == "u" and doc["version"] == 3
    assert "data" not in json.loads(document_line("x", 1, text, "t", False))


@pytest.mark.parametrize("module", ["elasticsearch", "aiohttp"])
def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    # An uninstalled driver, imitated: None in sys.modules makes its import fail as if absent.
    monkeypatch.setitem(sys.modules, module, None)
    from connectors import create_connector

    with pytest.raises(DriverMissing, match=r"pip install 'recordgate\[elasticsearch\]'"):
        create_connector("elasticsearch", "http://127.0.0.1:9200")


def test_url_hooks_aim_at_one_node() -> None:
    from connectors.elasticsearch import ElasticsearchConnector as ES

    url = "https://u:p%40w@es1:9200,https://es2:9200"
    assert ES.url_for(url, "127.0.0.1", 1234) == "https://u:p%40w@127.0.0.1:1234"
    assert ES.server_address(url) == ("es1", 9200)
    assert ES.server_address("http://127.0.0.1:9201") == ("127.0.0.1", 9201)
