"""Translate the ``elasticsearch`` client's exceptions into the project's storage errors.

* ``StorageTimeout``: the call did not finish in the connector's ``timeout`` (the client's
  ``ConnectionTimeout``, HTTP 408/504, the guard's own bound).
* ``StorageUnavailable``: the cluster cannot be reached or used now (connection and TLS errors,
  not Elasticsearch 8/9, HTTP 401/403, 404 of the index, 429 and 5xx), so the flusher retries.
* ``StorageRejected``: the cluster refused this request (other 4xx: bad data, mapping limits).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from connectors._common import guarded
from connectors.base import StorageError, StorageRejected, StorageTimeout, StorageUnavailable

__all__ = ["guard", "status_error", "translate"]

_TIMEOUT_STATUS = frozenset({408, 504})
# 406: the server refuses the client's media types, so it is no Elasticsearch 8/9 (an older
# Elasticsearch, OpenSearch): nothing can be done with it until the URL is fixed.
_UNAVAILABLE_STATUS = frozenset({401, 403, 404, 406, 429})


def status_error(status: int, text: str) -> StorageError:
    """The storage error for an HTTP status of the cluster (a whole answer or one bulk item)."""
    if status in _TIMEOUT_STATUS:
        return StorageTimeout(text)
    if status in _UNAVAILABLE_STATUS or status >= 500:
        return StorageUnavailable(text)
    return StorageRejected(text)


def translate(exc: BaseException, what: str) -> StorageError | None:
    """The storage error for ``exc``, or ``None`` if it is not a client or network error."""
    import elastic_transport
    from elasticsearch import ApiError, UnsupportedProductError

    if isinstance(exc, elastic_transport.ConnectionTimeout):
        return StorageTimeout(f"{what}: {exc}")
    if isinstance(exc, UnsupportedProductError):
        return StorageUnavailable(f"{what}: the server is not Elasticsearch ({exc})")
    if isinstance(exc, ApiError):
        return status_error(int(exc.status_code), f"{what}: {exc}")
    if isinstance(exc, elastic_transport.SerializationError):
        return StorageRejected(f"{what}: {exc}")
    if isinstance(exc, elastic_transport.TransportError | OSError):
        return StorageUnavailable(f"{what}: {exc}")
    if isinstance(exc, UnicodeError):  # a lone surrogate cannot be sent as UTF-8
        return StorageRejected(f"{what}: {exc}")
    return None


def guard(what: str, seconds: float) -> AbstractAsyncContextManager[None]:
    """Bound the block by ``seconds`` and translate what escapes it."""
    return guarded(what, seconds, translate)
