"""Engine construction and the prepared conditional statements, per dialect."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connectors._common import dump_json
from connectors.base import NUL, StorageUnavailable
from connectors.sql.schema import MYSQL_FAMILY

__all__ = ["build_engine", "cannot_hold", "serialize"]


def _serialize(value: Any) -> str:
    # The connector hands pre-serialised JSON text (validated by dump_json); pass it through.
    return value if isinstance(value, str) else dump_json(value)


# A JSON string (skipped whole) or a number in exponent form, such as 1e+21 or 1.5e-07.
_EXPONENT_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?[eE][-+]?\d+)')
_MAYBE_EXPONENT = re.compile(r"\d[eE][-+]?\d")


def _positional(match: re.Match[str]) -> str:
    number = match.group(1)
    if number is None:
        return match.group(0)
    text = format(Decimal(number), "f")
    return text if "." in text else text + ".0"


def serialize(backend: str) -> Callable[[Any], str]:
    """The JSON serializer for a backend; it also accepts already serialised JSON text."""
    return _serialize_postgresql if backend == "postgresql" else _serialize


def cannot_hold(backend: str) -> frozenset[str]:
    """What a backend refuses to store (``Connector.cannot_hold``): PostgreSQL's JSONB has no
    U+0000 (``unsupported Unicode escape sequence``; nor has its ``text``, so names). SQLite and
    MariaDB/MySQL store it and read it back exactly."""
    return frozenset({NUL}) if backend == "postgresql" else frozenset()


def _serialize_postgresql(value: Any) -> str:
    """JSONB stores numbers as ``numeric``: ``1e+21`` would come back as the integer
    1000000000000000000000. Writing exponent floats positionally with a fraction keeps them
    floats, and parsing that text yields the same double again."""
    text = _serialize(value)
    if _MAYBE_EXPONENT.search(text) is None:  # the common case costs one C-level scan
        return text
    return _EXPONENT_TOKEN.sub(_positional, text)


def _check_sqlite_path(database: str | None) -> None:
    # Fail before aiosqlite starts its worker thread: on a failed connect that thread may report
    # back after the event loop has gone, and the error is plain anyway.
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    directory = Path(database).expanduser().resolve().parent
    if not directory.is_dir():
        raise StorageUnavailable(f"SQLite database directory {str(directory)!r} does not exist")


SQLITE_SYNCHRONOUS = ("normal", "full")


def build_engine(
    url: str, *, timeout: float, pool_size: int, synchronous: str = "normal"
) -> AsyncEngine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    serializer = serialize(backend)
    options: dict[str, Any] = {"json_serializer": serializer, "json_deserializer": json.loads}
    if backend == "sqlite":
        _check_sqlite_path(parsed.database)
        # How long to wait for another writer's lock. Shorter than the call's timeout, so SQLite
        # itself gives up ("database is locked" -> StorageTimeout) instead of the call being
        # cancelled while aiosqlite's worker thread is still blocked inside sqlite3.
        busy = max(0.05, timeout * 0.8)
        engine = create_async_engine(url, connect_args={"timeout": busy}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy, synchronous))
        return engine
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        # asyncpg: `timeout` bounds connecting, `command_timeout` each statement. A transaction
        # left open by a client that stalls (a frozen network path, a paused process) would
        # hold its row locks, fence rows included, until the server notices, blocking every
        # other writer of those names: the server ends it once idle for the call's timeout,
        # which no transaction of ours outlives.
        connect_args = {
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {"idle_in_transaction_session_timeout": str(_idle_ms(timeout))},
        }
    if backend in MYSQL_FAMILY:
        connect_args = {
            "connect_timeout": timeout,
            "charset": "utf8mb4",
            "init_command": _mysql_session(timeout),
        }
        # READ COMMITTED: no gap locks, so concurrent flushers (and deletes of missing names)
        # do not block or deadlock each other over rows that are not there.
        options["isolation_level"] = "READ COMMITTED"
    engine = create_async_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_size,
        pool_timeout=timeout,
        pool_pre_ping=True,
        **options,
    )
    if backend in MYSQL_FAMILY:
        event.listen(engine.sync_engine, "do_connect", _report_changed_rows)
    return engine


_CLIENT_FOUND_ROWS = 2  # a capability flag of the MySQL client/server protocol


def _report_changed_rows(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    """SQLAlchemy always asks for "found rows"; the upsert needs the server's own count instead:
    per row 1 inserted, 2 updated, 0 left unchanged (with found rows, unchanged also counts 1)."""
    params["client_flag"] = int(params.get("client_flag", 0)) & ~_CLIENT_FOUND_ROWS


def _mysql_session(timeout: float) -> str:
    # The server gives up before the call's timeout, so a blocked statement fails as a database
    # error (row or table lock wait timeout -> StorageTimeout) rather than being cancelled
    # mid-protocol (which costs the connection). STRICT_ALL_TABLES: a name longer than the
    # column is refused, never silently truncated (two long names must not become one key).
    # max_statement_time exists on MariaDB only, hence MariaDB's executable comment.
    # idle_transaction_timeout (MariaDB): as PostgreSQL's idle_in_transaction_session_timeout
    # in build_engine, the server closes a connection left idle inside a transaction.
    lock_wait = max(1, math.floor(timeout * 0.8))
    idle = math.ceil(_idle_ms(timeout) / 1000)
    return (
        f"SET SESSION innodb_lock_wait_timeout = {lock_wait}, lock_wait_timeout = {lock_wait}, "
        "sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')"
        f"/*M!, max_statement_time = {timeout * 0.8:.3f}, idle_transaction_timeout = {idle} */"
    )


def _idle_ms(timeout: float) -> int:
    """How long a transaction may wait for its client: the call's timeout (at least 1 s)."""
    return max(1000, math.ceil(timeout * 1000))


def _sqlite_pragmas(busy: float, synchronous: str) -> Any:
    assert synchronous in SQLITE_SYNCHRONOUS  # checked by the connector; never interpolate input

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer. synchronous=NORMAL skips the fsync per commit:
        # committed data survives a killed process, not necessarily an OS crash or power loss;
        # FULL syncs every commit, surviving those too at a cost in write throughput.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
        cursor.close()

    return on_connect
