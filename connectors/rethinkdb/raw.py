"""Raw reader: the stored documents through the driver on a connection of its own, by name
(the ``name`` index), as a data team would read them; shares no code with the connector's reads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from connectors._common import prefix_upper_bound
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.url import Address

__all__ = ["RethinkDBRawReader"]


class RethinkDBRawReader:
    def __init__(self, address: Address, table: str, timeout: float) -> None:
        self._address = address
        self._table = table
        self._timeout = timeout
        self._conn: Any = None

    async def _run(self, query: Any) -> Any:
        if self._conn is None:
            address = self._address
            self._conn = await reql().connect(
                host=address.host,
                port=address.port,
                db=address.database,
                user=address.user,
                password=address.password,
                timeout=self._timeout,
            )
        return await query.run(self._conn)

    def _target(self) -> Any:
        return reql().db(self._address.database).table(self._table)

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        docs = await self._run(self._target().get_all(name, index="name").coerce_to("array"))
        docs = [doc for doc in docs if "tombstone" not in doc]  # a tombstone is not a record
        if not docs:
            return None
        doc = docs[0]
        updated = doc["updated_at"]
        assert isinstance(updated, datetime), f"updated_at is not a RethinkDB time: {updated!r}"
        return {
            "name": doc["name"],
            "collection": doc["collection"],
            "version": int(doc["version_key"]),
            "data": json.loads(doc["data_json"]),
            "native_data": doc["data"],
            "native_version": doc["version"],
            "id": doc["id"],
            "updated_at": updated,
        }

    async def count_raw(self, prefix: str = "") -> int:
        r = reql()
        upper = prefix_upper_bound(prefix)
        count = await self._run(
            self._target()
            .between(prefix, r.maxval if upper is None else upper, index="name")
            .filter(lambda doc: doc.has_fields("tombstone").not_())
            .count()
        )
        return int(count)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close(noreply_wait=False)
