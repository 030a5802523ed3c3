"""Translate redis-py exceptions into the project's storage errors, once, at the boundary.

* ``StorageUnavailable``: the server cannot be reached or used right now (refused or lost
  connection, authentication, still loading its data set, a read-only replica, out of memory,
  persistence failing: ``MISCONF``); the flusher keeps the batch and retries.
* ``StorageTimeout``: no answer within the timeout, or the server is busy (a long script).
* ``StorageRejected``: the server refused this operation (a key of the wrong type, a name that
  is not valid UTF-8); retrying the same operation cannot succeed.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from connectors._common import guarded
from connectors.base import StorageError, StorageRejected, StorageTimeout, StorageUnavailable

__all__ = ["guard", "translate"]

# Error codes (the reply's first word) redis-py leaves as a plain ResponseError.
_UNAVAILABLE_CODES = frozenset(
    {"MISCONF", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "LOADING", "READONLY", "OOM"}
)
_TIMEOUT_CODES = frozenset({"BUSY", "TRYAGAIN", "UNBLOCKED"})


def translate(exc: BaseException, what: str) -> StorageError | None:
    """The storage error for ``exc``, or ``None`` if it is not a Redis or network error."""
    from redis import exceptions as rx

    if isinstance(exc, rx.TimeoutError | rx.MaxConnectionsError):
        return StorageTimeout(f"{what}: {exc}")
    if isinstance(exc, rx.ConnectionError):  # also authentication, LOADING (BusyLoadingError)
        return StorageUnavailable(f"{what}: {exc}")
    unavailable = (rx.ReadOnlyError, rx.OutOfMemoryError, rx.NoPermissionError)
    if isinstance(exc, unavailable):
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, rx.ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code in _TIMEOUT_CODES:
            return StorageTimeout(f"{what}: {exc}")
        if code in _UNAVAILABLE_CODES:
            return StorageUnavailable(f"{what}: {exc}")
        return StorageRejected(f"{what}: {exc}")
    if isinstance(exc, rx.DataError | UnicodeError):  # e.g. a name with a lone surrogate
        return StorageRejected(f"{what}: {exc}")
    if isinstance(exc, rx.RedisError | OSError):
        return StorageUnavailable(f"{what}: {exc}")
    return None


def guard(what: str, seconds: float) -> AbstractAsyncContextManager[None]:
    """Bound the block by ``seconds`` and translate what escapes it. A command cancelled by the
    bound makes redis-py drop its connection, so no late reply is read by the next command."""
    return guarded(what, seconds, translate)
