"""Translate PyMongo's exceptions into the project's storage errors, once, at the boundary.

* ``StorageUnavailable``: no server to talk to (selection failed, connection lost or refused,
  not primary, shutting down, authentication), or a write concern the deployment cannot satisfy.
* ``StorageTimeout``: the operation ran out of time (the driver's ``timeoutMS``, a server-side
  ``maxTimeMS``, a socket timeout, a write concern timeout) or lost to contention (write
  conflict, lock timeout).
* ``StorageRejected``: the server or the driver refused the operation itself (bad document,
  too large, conflicting index definition, ...).

``guard`` also bounds its block with ``asyncio.timeout``, so no call outlives the timeout even
if the driver's own deadline does not fire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from connectors._common import guarded
from connectors.base import StorageError, StorageRejected, StorageTimeout, StorageUnavailable

__all__ = ["CONTENTION_CODES", "TIMEOUT_CODES", "UNAVAILABLE_CODES", "guard", "translate"]

# Server error codes (https://www.mongodb.com/docs/manual/reference/error-codes/).
UNAVAILABLE_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        11,  # UserNotFound
        13,  # Unauthorized
        18,  # AuthenticationFailed
        89,  # NetworkTimeout (between members)
        91,  # ShutdownInProgress
        100,  # UnsatisfiableWriteConcern
        133,  # FailedToSatisfyReadPreference
        189,  # PrimarySteppedDown
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
    }
)
TIMEOUT_CODES = frozenset(
    {
        50,  # MaxTimeMSExpired
        64,  # WriteConcernFailed (wtimeout)
        202,  # NetworkInterfaceExceededTimeLimit
        262,  # ExceededTimeLimit
    }
)
CONTENTION_CODES = frozenset(
    {
        24,  # LockTimeout
        112,  # WriteConflict
    }
)


def translate(exc: BaseException, what: str) -> StorageError | None:
    """The storage error for ``exc``, or ``None`` if it is not a PyMongo/BSON error."""
    from bson.errors import BSONError
    from pymongo import errors

    text = f"{what}: {_describe(exc)}"
    if isinstance(exc, errors.ServerSelectionTimeoutError):
        return StorageUnavailable(text)  # no server answered: unavailable, not merely slow
    if isinstance(exc, errors.BulkWriteError):
        return _bulk_error(exc.details, text)
    if isinstance(exc, errors.WTimeoutError):
        return StorageTimeout(text)
    if isinstance(exc, errors.NetworkTimeout | errors.ExecutionTimeout):
        return StorageTimeout(text)
    if isinstance(exc, errors.OperationFailure):
        return _by_code(exc.code, text, exc.timeout)
    if isinstance(exc, errors.ConnectionFailure):  # AutoReconnect, NotPrimaryError, ...
        return StorageTimeout(text) if exc.timeout else StorageUnavailable(text)
    if isinstance(exc, errors.PyMongoError):
        if getattr(exc, "timeout", False):
            return StorageTimeout(text)
        if isinstance(exc, errors.ConfigurationError | errors.InvalidOperation):
            return StorageUnavailable(text)
        return StorageRejected(text)  # InvalidDocument, DocumentTooLarge, InvalidName, ...
    if isinstance(exc, BSONError | OverflowError):
        return StorageRejected(text)
    if isinstance(exc, OSError):  # DNS failure of an SRV lookup, refused connection
        return StorageUnavailable(text)
    return None


def _by_code(code: int | None, text: str, timeout: bool = False) -> StorageError:
    if code in UNAVAILABLE_CODES:
        return StorageUnavailable(text)
    if timeout or code in TIMEOUT_CODES or code in CONTENTION_CODES:
        return StorageTimeout(text)
    return StorageRejected(text)


def _bulk_error(details: Mapping[str, Any], text: str) -> StorageError:
    """A bulk write's failure that is not a version conflict: the worst of its item errors."""
    codes = [error.get("code") for error in details.get("writeErrors", ())]
    codes += [error.get("code") for error in details.get("writeConcernErrors", ())]
    errors = [_by_code(code, text) for code in codes] or [StorageRejected(text)]
    for kind in (StorageUnavailable, StorageTimeout):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]


def _describe(exc: BaseException) -> str:
    """The error without the documents PyMongo attaches to bulk errors (they hold record data)."""
    from pymongo import errors

    if isinstance(exc, errors.BulkWriteError):
        items = exc.details.get("writeErrors", []) + exc.details.get("writeConcernErrors", [])
        first = items[0] if items else {}
        return f"{len(items)} write errors, first code {first.get('code')}: {first.get('errmsg')}"
    if isinstance(exc, errors.ServerSelectionTimeoutError):
        # Without the topology description PyMongo appends (a few hundred characters).
        return f"no server available: {str(exc).partition(', Timeout: ')[0]}"
    return f"{type(exc).__name__}: {exc}"


@asynccontextmanager
async def guard(what: str, seconds: float) -> AsyncIterator[None]:
    """Bound the block by ``seconds`` (the driver's deadline and ``asyncio.timeout``) and
    translate what escapes it."""
    import pymongo

    from connectors.mongodb.client import driver_deadline

    async with guarded(what, seconds, translate):
        with pymongo.timeout(driver_deadline(seconds)):
            yield
