"""``ElasticsearchConnector``: records as documents of one Elasticsearch index (8.x and 9.x).

URL: ``http://host:9200`` or ``https://user:password@host:9200`` (several nodes separated by
commas). Options (strings accepted): ``index`` (default ``recordgate``), ``timeout`` (seconds
per call, default 5), ``refresh`` (``false``, the default, ``wait_for`` or ``true``: when a
write becomes visible to searches), ``page_size`` (scan page, default 500), ``fields_limit``
(``index.mapping.total_fields.limit``, default 1000), ``shards``/``replicas`` (for a new index),
``api_key``, ``ca_certs``, ``verify_certs``, ``allow_async_translog``.

Invariants:

* Writes are compare-and-set on sequence numbers (``outcomes.py``): one realtime ``mget`` of the
  versions, one ``_bulk`` of ``create`` or ``if_seq_no``-guarded ``index``/``delete`` items,
  and a re-read and re-decide of the items that lost a race (409). A record deleted and created
  again at a lower version just works (external versioning would refuse it while the delete's
  tombstone lives, ``index.gc_deletes``).
* Durability: a bulk returns once its items are in the translog of every active copy, which the
  index's ``index.translog.durability: request`` (the default) fsyncs before answering. ``open``
  refuses an index set to ``async`` unless ``allow_async_translog`` is set.
* Fenced (capability ``fenced``): the fence is a field of the record's document, and a deleted
  fenced name's document becomes a tombstone (``layout.py``), so the same compare-and-set
  covers fence, version and data (``outcomes.py``).
* Reads (``get``, ``get_many``, ``head``) are realtime ``mget``s: they see every write that
  returned, refreshed or not. ``scan`` searches, so it refreshes the index first.
* Every call is bounded by ``timeout`` (the client's own retries are off) and raises only
  ``StorageUnavailable``, ``StorageTimeout`` or ``StorageRejected``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from connectors._common import dump_json, option_float, option_int
from connectors.base import (
    CAPABILITY_FENCED,
    CAPABILITY_NETWORK,
    CAPABILITY_RAW,
    Delete,
    Outcome,
    Put,
    RawReader,
    Snapshot,
    StorageRejected,
    StorageUnavailable,
    WriteResult,
)
from connectors.elasticsearch.client import ClientSettings, check_driver, hosts_of, safe_url
from connectors.elasticsearch.errors import guard, status_error
from connectors.elasticsearch.layout import (
    EXPECTED_TYPES,
    FENCE_FIELDS,
    LIVE_RECORDS,
    MAX_VERSION,
    SOURCE_FIELDS,
    STATE_FIELDS,
    check_index_name,
    doc_id,
    document_line,
    index_body,
    snapshot_from_source,
    tombstone_line,
)
from connectors.elasticsearch.outcomes import (
    Action,
    ItemVerdict,
    NeedData,
    Stored,
    decide,
    item_verdict,
)

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = ["ElasticsearchConnector"]

log = logging.getLogger(__name__)

REFRESH_POLICIES = ("false", "wait_for", "true")
_MGET_CHUNK = 1000
_BULK_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_MGET_FILTER = "docs._id,docs.found,docs._seq_no,docs._primary_term,docs._source,docs.error"


def _option_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"option {name!r} must be true or false, got {value!r}")


class ElasticsearchConnector:
    """Records in an Elasticsearch index; see the module docstring for options and guarantees."""

    name: ClassVar[str] = "elasticsearch"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAPABILITY_RAW, CAPABILITY_NETWORK, CAPABILITY_FENCED}
    )
    namespace_option: ClassVar[str] = "index"
    """The option that isolates one store from another; the conformance suite varies it."""

    def __init__(
        self,
        url: str,
        *,
        index: str = "recordgate",
        timeout: float | str = 5.0,
        refresh: str | bool = "false",
        page_size: int | str = 500,
        fields_limit: int | str = 1000,
        shards: int | str | None = None,
        replicas: int | str | None = None,
        api_key: str | None = None,
        ca_certs: str | None = None,
        verify_certs: bool | str = True,
        allow_async_translog: bool | str = False,
    ) -> None:
        check_driver()
        self.url = url
        self.index = check_index_name(index)
        self.timeout = option_float(timeout, "timeout")
        if self.timeout <= 0:
            raise ValueError("option 'timeout' must be positive")
        refresh = str(refresh).lower()
        if refresh not in REFRESH_POLICIES:
            raise ValueError(f"option 'refresh' must be one of {', '.join(REFRESH_POLICIES)}")
        self.refresh = refresh
        self.page_size = option_int(page_size, "page_size")
        if not 1 <= self.page_size <= 10_000:
            raise ValueError("option 'page_size' must be between 1 and 10000")
        self.fields_limit = option_int(fields_limit, "fields_limit")
        self.shards = None if shards in (None, "") else option_int(shards, "shards")
        self.replicas = None if replicas in (None, "") else option_int(replicas, "replicas")
        self.allow_async_translog = _option_bool(allow_async_translog, "allow_async_translog")
        self.settings = ClientSettings(
            hosts_of(url),
            self.timeout,
            api_key=api_key or None,
            ca_certs=ca_certs or None,
            verify_certs=_option_bool(verify_certs, "verify_certs"),
        )
        self._client: AsyncElasticsearch | None = None

    @classmethod
    def url_for(cls, url: str, host: str, port: int) -> str:
        """``url`` aimed at one node ``host:port``, keeping the first node's scheme and
        credentials (the conformance suite's network tests)."""
        first = urlsplit(url.split(",")[0].strip())
        userinfo = first.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
        return urlunsplit(first._replace(netloc=netloc))

    @classmethod
    def server_address(cls, url: str) -> tuple[str, int]:
        """The first node's ``(host, port)``."""
        first = urlsplit(hosts_of(url)[0])
        assert first.hostname is not None and first.port is not None
        return first.hostname, first.port

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the index with its mapping if missing, and check an existing one.

        Safe when several servers open at once: the losers of the creation race see
        ``resource_already_exists_exception`` and go on to the check.
        """
        if self._client is not None:
            return
        client = self.settings.create()
        try:
            async with guard(f"open {safe_url(self.url)} index {self.index!r}", self.timeout):
                await self._create_index(client)
                await self._check_index(client)
        except BaseException:
            await client.close()
            raise
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            async with guard("close", self.timeout):
                await client.close()

    async def __aenter__(self) -> ElasticsearchConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Delete the index (tests and the conformance suite clean up with it)."""
        client = self._require()
        async with guard(f"delete index {self.index!r}", self.timeout):
            await client.options(ignore_status=404).indices.delete(index=self.index)

    async def _create_index(self, client: AsyncElasticsearch) -> None:
        body = index_body(
            fields_limit=self.fields_limit, shards=self.shards, replicas=self.replicas
        )
        response = await client.options(ignore_status=400).indices.create(
            index=self.index, settings=body["settings"], mappings=body["mappings"]
        )
        error = response.body.get("error") if response.meta.status == 400 else None
        if error is not None:
            kind = error.get("type") if isinstance(error, dict) else None
            if kind != "resource_already_exists_exception":
                raise StorageRejected(f"creating index {self.index!r}: {error}")

    async def _check_index(self, client: AsyncElasticsearch) -> None:
        """An existing index must have our field types, and durable writes unless allowed."""
        mapping: dict[str, Any] = (await client.indices.get_mapping(index=self.index)).body
        properties = _only_index(mapping).get("mappings", {}).get("properties", {})
        wrong = {
            field: properties.get(field, {}).get("type", "missing")
            for field, kind in EXPECTED_TYPES.items()
            if properties.get(field, {}).get("type") != kind
        }
        missing = set(FENCE_FIELDS) - set(properties)
        if wrong and set(wrong) != missing:
            raise StorageRejected(
                f"index {self.index!r} exists with another layout ({wrong}); expected "
                f"{EXPECTED_TYPES}: choose another index name"
            )
        if missing:
            # An index made before fencing: adding fields is allowed, and idempotent when
            # several servers open at once.
            added = {field: FENCE_FIELDS[field] for field in sorted(missing)}
            await client.indices.put_mapping(index=self.index, properties=added)
        settings: dict[str, Any] = (
            await client.indices.get_settings(
                index=self.index, name="index.translog.durability", flat_settings=True
            )
        ).body
        durability = _only_index(settings).get("settings", {})
        if durability.get("index.translog.durability", "request") != "request":
            if not self.allow_async_translog:
                raise StorageRejected(
                    f"index {self.index!r} has index.translog.durability: async, so a write "
                    "acknowledged by Elasticsearch can be lost in a crash; set it to 'request' "
                    "or accept the risk with the connector option allow_async_translog: true"
                )
            log.warning(
                "index %r has index.translog.durability: async: acknowledged writes can be lost "
                "in a crash (accepted by allow_async_translog)",
                self.index,
            )

    # -- reads -----------------------------------------------------------------------------

    async def get(self, name: str) -> Snapshot | None:
        return (await self.get_many([name])).get(name)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        client = self._require()
        wanted = list(dict.fromkeys(names))
        found: dict[str, Snapshot] = {}
        async with guard("get", self.timeout):
            for name, source, _ in await self._mget(client, wanted, SOURCE_FIELDS):
                snapshot = snapshot_from_source(name, source)
                if snapshot is not None:
                    found[name] = snapshot
        return found

    async def head(self, name: str) -> int | None:
        client = self._require()
        async with guard("head", self.timeout):
            for _, source, _ in await self._mget(client, [name], ["name", "version"]):
                if source.get("name") == name:
                    return int(source["version"])
        return None

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        """Snapshots whose name starts with ``prefix``, in name order, a page per search.

        Refreshes the index first, so every write that returned before the scan started is
        seen; later writes may or may not be. Pages follow ``search_after`` on ``name``, so each
        record comes at most once, in order.
        """
        client = self._require()
        # Tombstones have no name: a prefix query skips them, and so does LIVE_RECORDS.
        query: dict[str, Any] = {
            "bool": {"filter": [{"prefix": {"name": prefix}} if prefix else LIVE_RECORDS]}
        }
        async with guard("scan", self.timeout):
            await client.indices.refresh(index=self.index)
        after: list[Any] | None = None
        while True:
            async with guard("scan", self.timeout):
                response = await client.search(
                    index=self.index,
                    query=query,
                    sort=[{"name": "asc"}],
                    size=self.page_size,
                    search_after=after,
                    source_includes=SOURCE_FIELDS,
                    track_total_hits=False,
                )
            hits = response.body["hits"]["hits"]
            for hit in hits:
                source = hit["_source"]
                snapshot = snapshot_from_source(source["name"], source)
                if snapshot is not None:
                    yield snapshot
            if len(hits) < self.page_size:
                return
            after = hits[-1]["sort"]

    # -- writes ----------------------------------------------------------------------------

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        client = self._require()
        if not ops:
            return []
        texts = self._check_ops(ops)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        async with guard(f"write of {len(ops)} operations", self.timeout):
            return await self._write(client, ops, texts, now)

    def _check_ops(self, ops: Sequence[Put | Delete]) -> dict[str, str]:
        """Each put's JSON text; anything Elasticsearch could not take is rejected up front,
        before any operation of the batch is written."""
        texts: dict[str, str] = {}
        for op in ops:
            if not 0 <= op.version <= MAX_VERSION:
                raise StorageRejected(
                    f"record {op.name!r}: version {op.version} is outside 0..2**63-1"
                )
            fence = op.fence
            if fence is not None and (type(fence) is not int or not 0 <= fence <= MAX_VERSION):
                raise StorageRejected(f"record {op.name!r}: fence {fence!r} is not 0..2**63-1")
            try:
                op.name.encode()
                if isinstance(op, Put):
                    text = texts[op.name] = dump_json(op.data)
                    text.encode()
            except UnicodeEncodeError as exc:
                raise StorageRejected(f"record {op.name!r} is not valid UTF-8: {exc}") from exc
        return texts

    async def _write(
        self,
        client: AsyncElasticsearch,
        ops: Sequence[Put | Delete],
        texts: dict[str, str],
        now: str,
    ) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(ops)
        state = await self._read_state(client, [op.name for op in ops], with_text=False)
        unsearchable: set[str] = set()
        pending = list(range(len(ops)))
        while pending:
            actions: list[tuple[int, Action]] = []
            need_data: list[str] = []
            for i in pending:
                op = ops[i]
                decision = decide(op, state.get(op.name), texts.get(op.name))
                if isinstance(decision, WriteResult):
                    results[i] = decision
                elif decision is NeedData.TOKEN:
                    need_data.append(op.name)
                else:
                    actions.append((i, decision))
            if need_data:
                state.update(await self._read_state(client, need_data, with_text=True))
            pending = [i for i in pending if results[i] is None]
            if not actions:
                continue
            body = self._bulk_body(ops, actions, texts, now, unsearchable)
            items = await self._bulk(client, body)
            if len(items) != len(actions):
                raise StorageUnavailable(f"_bulk answered {len(items)} items for {len(actions)}")
            reread: list[str] = []
            for (i, action), item in zip(actions, items, strict=True):
                op = ops[i]
                status = int(item.get("status", 0))
                searchable = action.body == "record" and op.name not in unsearchable
                verdict = item_verdict(action.kind, status, searchable)
                if verdict is ItemVerdict.APPLIED:
                    results[i] = WriteResult(op, Outcome.APPLIED)
                elif verdict is ItemVerdict.REREAD:
                    reread.append(op.name)
                elif verdict is ItemVerdict.UNSEARCHABLE:
                    log.info("record %r: data not searchable (%s)", op.name, _reason(item))
                    unsearchable.add(op.name)
                else:
                    raise status_error(status, f"record {op.name!r}: {_reason(item)}")
            if reread:
                state.update(await self._read_state(client, reread, with_text=True))
            pending = [i for i in pending if results[i] is None]
        done = [result for result in results if result is not None]
        assert len(done) == len(ops)
        return done

    def _bulk_body(
        self,
        ops: Sequence[Put | Delete],
        actions: list[tuple[int, Action]],
        texts: dict[str, str],
        now: str,
        unsearchable: set[str],
    ) -> str:
        lines: list[str] = []
        index = self.index
        for i, action in actions:
            op = ops[i]
            meta: dict[str, Any] = {"_index": index, "_id": doc_id(op.name)}
            if action.seq_no is not None:
                meta["if_seq_no"] = action.seq_no
                meta["if_primary_term"] = action.primary_term
            lines.append(dump_json({action.kind: meta}))
            if action.kind == "delete":
                continue
            if action.body == "tombstone":
                assert action.fence is not None
                lines.append(tombstone_line(op.name, action.fence, now))
            elif action.body == "fence":  # an idempotent retry raising the fence: only that
                lines.append(dump_json({"doc": {"fence": action.fence}}))
            else:
                searchable = op.name not in unsearchable
                text = texts[op.name]
                lines.append(
                    document_line(op.name, op.version, text, now, searchable, action.fence)
                )
        lines.append("")
        return "\n".join(lines)

    async def _bulk(self, client: AsyncElasticsearch, body: str) -> list[dict[str, Any]]:
        # In milliseconds: Elasticsearch refuses fractional time values ("0.5s").
        wait = f"{max(1, int(self.timeout * 1000))}ms"
        options: dict[str, Any] = {"filter_path": _BULK_FILTER, "timeout": wait}
        if self.refresh != "false":
            options["refresh"] = self.refresh
        # Pre-serialised NDJSON: the client sends a str body as it is (encoded as UTF-8).
        response = await client.bulk(operations=body, **options)  # type: ignore[arg-type]
        items = response.body.get("items", [])
        # One key per item: the action it answers.
        return [next(iter(item.values())) for item in items]

    async def _read_state(
        self, client: AsyncElasticsearch, names: list[str], *, with_text: bool
    ) -> dict[str, Stored | None]:
        fields = [*STATE_FIELDS, "data_json"] if with_text else STATE_FIELDS
        state: dict[str, Stored | None] = dict.fromkeys(names)
        for name, source, doc in await self._mget(client, names, fields):
            live = source.get("name") == name
            if live or source.get("tombstone") == name:
                fence = source.get("fence")
                state[name] = Stored(
                    int(source["version"]) if live else None,
                    int(doc["_seq_no"]),
                    int(doc["_primary_term"]),
                    source.get("data_json") if with_text and live else None,
                    None if fence is None else int(fence),
                )
        return state

    async def _mget(
        self, client: AsyncElasticsearch, names: list[str], fields: list[str]
    ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """``(name, _source, doc)`` of each name whose document exists (realtime)."""
        found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for start in range(0, len(names), _MGET_CHUNK):
            chunk = names[start : start + _MGET_CHUNK]
            response = await client.mget(
                index=self.index,
                docs=[{"_id": doc_id(name)} for name in chunk],
                source_includes=fields,
                filter_path=_MGET_FILTER,
            )
            docs = response.body.get("docs", [])
            if len(docs) != len(chunk):
                raise StorageUnavailable(f"mget answered {len(docs)} documents for {len(chunk)}")
            for name, doc in zip(chunk, docs, strict=True):
                if "error" in doc:
                    raise StorageUnavailable(f"reading record {name!r}: {doc['error']}")
                if doc.get("found"):
                    found.append((name, doc.get("_source", {}), doc))
        return found

    # -- raw layout ------------------------------------------------------------------------

    def raw_reader(self) -> RawReader:
        from connectors.elasticsearch.raw import ElasticsearchRawReader

        return ElasticsearchRawReader(self.settings, self.index, self.timeout)

    # -- helpers ---------------------------------------------------------------------------

    def _require(self) -> AsyncElasticsearch:
        if self._client is None:
            raise StorageUnavailable("elasticsearch connector is not open")
        return self._client


def _only_index(body: dict[str, Any]) -> dict[str, Any]:
    """The one index's part of an answer keyed by index name (the index itself, or the one an
    alias named ``index`` points to)."""
    parts: list[dict[str, Any]] = list(body.values())
    return parts[0] if parts else {}


def _reason(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('reason')}"
    return f"status {item.get('status')}: {error}"
