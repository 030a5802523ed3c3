"""Translate SQLAlchemy and driver exceptions into the project's storage errors."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractAsyncContextManager

from sqlalchemy import exc as sa_exc

from connectors._common import guarded
from connectors.base import StorageError, StorageRejected, StorageTimeout, StorageUnavailable

__all__ = ["guard", "translate"]

_DRIVER_MODULES = ("asyncpg", "aiosqlite", "sqlite3", "aiomysql", "asyncmy", "pymysql")

# SQLSTATE classes meaning "cannot use the database right now" rather than "refused this
# operation": connection (08), missing database (3D), authentication (28), insufficient
# resources (53), operator intervention such as shutdown (57), system errors (58).
_UNAVAILABLE_SQLSTATE = ("08", "3D", "28", "53", "57", "58")
# Serialization failure and deadlock: transient contention, reported as a timeout.
_CONTENTION_SQLSTATE = ("40001", "40P01", "55P03")
# MariaDB/MySQL drivers give error numbers, not SQLSTATEs. Timeouts and contention: lock wait
# timeout, deadlock, statement time limit (MariaDB max_statement_time; MySQL
# max_execution_time). Unavailable: refused or lost connections, too many connections, access
# denied, unknown database, shutdown in progress, connection killed.
_MYSQL_TIMEOUT = frozenset({1205, 1213, 1969, 3024})
_MYSQL_UNAVAILABLE = frozenset({1040, 1044, 1045, 1049, 1053, 1927, 2002, 2003, 2006, 2013, 2055})
# Refusals of this data that asyncmy reports as OperationalError, so they would otherwise read as
# an outage (and the flusher would retry a record that can never be written): a CHECK
# constraint failed (MariaDB's json_valid, e.g. JSON nested 32 deep), invalid JSON text
# (MySQL), a value too long or out of range, an invalid string.
_MYSQL_REJECTED = frozenset({1264, 1366, 1406, 3140, 3819, 4025})


def translate(exc: BaseException, what: str) -> StorageError | None:
    """The storage error for ``exc``, or ``None`` if it is not a database/driver error."""
    if isinstance(exc, sa_exc.TimeoutError):  # connection pool exhausted
        return StorageTimeout(f"{what}: no database connection free in time")
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        text = str(orig)
        sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        code = _mysql_error_number(orig)
        if sqlstate.startswith(_CONTENTION_SQLSTATE) or code in _MYSQL_TIMEOUT:
            return StorageTimeout(f"{what}: {text}")
        if code in _MYSQL_UNAVAILABLE:
            return StorageUnavailable(f"{what}: {text}")
        if code in _MYSQL_REJECTED:
            return StorageRejected(f"{what}: {text}")
        if sqlstate.startswith(_UNAVAILABLE_SQLSTATE):
            return StorageUnavailable(f"{what}: {text}")
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return StorageUnavailable(f"{what}: {text}")
        if isinstance(exc, sa_exc.OperationalError):
            if "locked" in text or "busy" in text:
                return StorageTimeout(f"{what}: {text}")
            return StorageUnavailable(f"{what}: {text}")
        return StorageRejected(f"{what}: {text}")
    if isinstance(exc, sqlite3.Error):  # unwrapped: the SQLite write path calls the driver
        return _sqlite_error(exc, what)
    if type(exc).__module__ == "asyncmy.errors":  # unwrapped: the MariaDB/MySQL write path
        # Wrapped as SQLAlchemy would (by class name: OperationalError, DataError, ...), so it
        # is translated exactly as the same error from the engine.
        return translate(sa_exc.DBAPIError.instance(None, None, exc, Exception), what)
    if isinstance(exc, sa_exc.StatementError | sa_exc.ArgumentError):
        return StorageRejected(f"{what}: {exc}")
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return StorageUnavailable(f"{what}: {exc}")
    if isinstance(exc, OSError):  # refused, unreachable, DNS failure
        return StorageUnavailable(f"{what}: {exc}")
    if type(exc).__module__.split(".")[0] in _DRIVER_MODULES:
        return StorageUnavailable(f"{what}: {exc}")
    return None


def _sqlite_error(exc: sqlite3.Error, what: str) -> StorageError:
    """As for the same error wrapped by SQLAlchemy above."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if "locked" in text or "busy" in text:
            return StorageTimeout(f"{what}: {text}")
        return StorageUnavailable(f"{what}: {text}")
    if isinstance(exc, sqlite3.InterfaceError):
        return StorageUnavailable(f"{what}: {text}")
    return StorageRejected(f"{what}: {text}")


def _mysql_error_number(orig: object) -> int | None:
    """The server's error number of a MySQL-protocol driver error (``args[0]``), if it has one."""
    if type(orig).__module__.split(".")[0] not in ("asyncmy", "aiomysql", "pymysql"):
        return None
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def guard(what: str, seconds: float) -> AbstractAsyncContextManager[None]:
    """Bound the block by ``seconds`` and translate what escapes it."""
    return guarded(what, seconds, translate)
