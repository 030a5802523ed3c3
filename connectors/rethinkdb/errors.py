"""Translate the driver's exceptions into the project's storage errors, once, at the boundary.

* Cannot reach or use the server (connection refused or lost, authentication, a table or
  replica not available, the server's internal errors): ``StorageUnavailable``.
* No answer within the call's timeout, or a write whose outcome the server could not determine
  (``ReqlOpIndeterminateError``): ``StorageTimeout`` (the flusher retries; retries are idempotent).
* The server refused the query (bad data, a resource limit such as the array size):
  ``StorageRejected``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from connectors._common import guarded
from connectors.base import StorageError, StorageRejected, StorageTimeout, StorageUnavailable

__all__ = ["guard", "translate"]


def translate(exc: BaseException, what: str) -> StorageError | None:
    """The storage error for ``exc``, or ``None`` if it is not a driver or network error."""
    if type(exc).__module__.split(".")[0] != "rethinkdb":
        if isinstance(exc, OSError):  # refused, unreachable, reset
            return StorageUnavailable(f"{what}: {exc}")
        return None
    from rethinkdb import errors

    text = _first_line(exc)
    if isinstance(exc, errors.ReqlTimeoutError):
        return StorageTimeout(f"{what}: {text}")
    if isinstance(exc, errors.ReqlOpIndeterminateError):
        return StorageTimeout(f"{what}: outcome unknown: {text}")
    if isinstance(
        exc,
        errors.ReqlDriverError
        | errors.ReqlAvailabilityError
        | errors.ReqlInternalError
        | errors.ReqlPermissionError,
    ):
        return StorageUnavailable(f"{what}: {text}")
    if isinstance(exc, errors.ReqlError):
        return StorageRejected(f"{what}: {text}")
    return StorageUnavailable(f"{what}: {text}")


def _first_line(exc: BaseException) -> str:
    # The driver appends the whole query (which holds record data) to its messages: keep the
    # server's words only.
    message = getattr(exc, "message", None) or str(exc)
    return str(message).split("\n", 1)[0][:500]


def guard(what: str, seconds: float) -> AbstractAsyncContextManager[None]:
    """Bound the block by ``seconds`` and translate what escapes it."""
    return guarded(what, seconds, translate)
