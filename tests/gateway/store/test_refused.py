"""A state storage refuses for good, on one server (``CachedStore`` over real PostgreSQL, which
refuses U+0000 in a JSONB string): its writer is told, and then the state is undone, so no
reader is served, as current, a state storage will never hold."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from connectors.sql import SQLConnector
from gateway.exceptions import StorageRejected
from gateway.store import Record
from tests.gateway.store.conftest import rec, until
from tests.servers import require_postgres

NUL = "a\u0000b"


async def test_a_state_storage_refuses_is_replaced_by_storage_s(make_store: Any) -> None:
    """``kept`` is stored as ``{"v": 1}``, then written with U+0000 (version 2); ``fresh`` is
    written with U+0000 only. Both writers get ``StorageRejected``. Then ``kept`` reads as
    storage's data with version 3 (above the refused version that subscribers saw), stored
    so, and pushed to subscribers; ``fresh`` reads as absent, its subscribers told. Before,
    both refused states stayed cached as clean until evicted (served as current; then the
    next read went back to storage's version 1 without a word to subscribers)."""
    url, table = require_postgres(), f"store_{uuid.uuid4().hex[:12]}"
    connector = SQLConnector(url, table=table, timeout=2)
    store = await make_store(connector, interval=0.05)
    changes: list[tuple[str, Record | None]] = []
    store.on_external_change = lambda name, record: changes.append((name, record))
    try:
        store.put(rec("kept", 1, {"v": 1}))
        await store.durable("kept", 1)
        store.put(rec("kept", 2, {"s": NUL}))
        store.put(rec("fresh", 1, {"s": NUL}))
        for name, version in (("kept", 2), ("fresh", 1)):
            with pytest.raises(StorageRejected):
                await store.durable(name, version)

        def restored() -> bool:
            kept = store.cached("kept")
            return kept is not None and kept.data == {"v": 1} and ("fresh", None) in changes

        await until(restored)
        kept = store.cached("kept")
        assert kept is not None and kept.version == 3
        assert ("kept", kept) in changes
        assert await store.load("fresh") is None
        await store.flush()
        stored = await connector.get("kept")
        assert stored is not None and (stored.version, stored.data) == (3, {"v": 1})
        assert await connector.get("fresh") is None
        assert store.stats.dirty == 0 and store.stats.failed == 2 and store.stats.reverted == 1
    finally:
        await connector.drop()
