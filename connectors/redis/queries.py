"""Commands a data team runs with plain ``redis-cli`` on the stored layout (default prefix).

Kept verbatim in one place: the README shows these strings and ``tests/connectors/test_redis.py``
runs exactly them (``redis-cli`` pointed at a test server with ``-p PORT``).
"""

from __future__ import annotations

__all__ = ["DATA_TEAM_COMMANDS"]

DATA_TEAM_COMMANDS: dict[str, str] = {
    # The names of collection `user`, in name order, a page of 100 at a time.
    "list a collection": "redis-cli ZRANGEBYLEX '{recordgate}:collection:user' - + LIMIT 0 100",
    # One record: name, collection, version, data (JSON text), updated_at.
    "read a record": "redis-cli HGETALL '{recordgate}:record:user/42'",
    # Users older than 30, filtered server-side by a read-only Lua script over the collection.
    "query record fields": (
        'redis-cli EVAL_RO "local found = {} '
        "for _, name in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], '-', '+')) do "
        "local data = cjson.decode(redis.call('HGET', KEYS[2] .. name, 'data')) "
        "if type(data.age) == 'number' and data.age > 30 then found[#found + 1] = name end "
        "end return found\" 2 '{recordgate}:collection:user' '{recordgate}:record:'"
    ),
}
