"""The one exception hierarchy of recordgate. Causes are chained with ``raise ... from``.

::

    RecordgateError
    ├── ConfigError
    │   ├── ConnectorNotFound
    │   └── DriverMissing             a connector's driver is not installed (names the extra)
    ├── ProtocolError                 bytes that are not a valid deepstream message
    │   ├── MessageParseError         not protobuf / not a known shape
    │   ├── UnknownTopic
    │   ├── UnknownAction
    │   ├── LoneSurrogateText         a string field holding half of a UTF-16 surrogate pair
    │   └── MessageTooLarge
    ├── InvalidData                   well-formed message, unusable payload (JSON, path)
    │   ├── InvalidJSON               JSON text refused at the edge (``reason`` says why)
    │   └── LimitExceeded             over a configured limit (``key`` names it)
    ├── UnencodableData               a value that cannot be written back as JSON text
    ├── ClusterUnavailable            a cluster node cannot reach its Redis at start
    ├── CommitConflict                a cluster write lost the race for its version (run again)
    ├── StorageError                  raised by connectors, at their boundary
    │   ├── StorageUnavailable        cannot reach the database
    │   ├── StorageTimeout            the call did not finish within its timeout
    │   ├── StorageRejected           the database refused the operation
    │   ├── WriteDiscarded            a conflict policy dropped the write for storage's version
    │   ├── RecordsUnavailable        a cluster node cannot reach Redis to commit or read a record
    │   └── BackPressure              the write-behind queue is full
    └── ClientError                   raised by the Python client
        ├── NotConnected
        ├── AuthenticationFailed
        ├── RecordError               (VERSION_EXISTS, RECORD_NOT_FOUND, ...)
        ├── RpcError                  (NO_RPC_PROVIDER, RESPONSE_TIMEOUT, provider error)
        └── RequestTimeout
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationFailed",
    "BackPressure",
    "ClientError",
    "ClusterUnavailable",
    "CommitConflict",
    "ConfigError",
    "ConnectorNotFound",
    "DriverMissing",
    "InvalidData",
    "InvalidJSON",
    "LimitExceeded",
    "LoneSurrogateText",
    "MessageParseError",
    "MessageTooLarge",
    "NotConnected",
    "ProtocolError",
    "RecordError",
    "RecordgateError",
    "RecordsUnavailable",
    "RedisUnreachable",
    "RequestTimeout",
    "RpcError",
    "StorageError",
    "StorageRejected",
    "StorageTimeout",
    "StorageUnavailable",
    "UnencodableData",
    "UnknownAction",
    "UnknownTopic",
    "WriteDiscarded",
    "storage_error_kind",
]


class RecordgateError(Exception):
    """Base of every error recordgate raises on purpose."""


class ConfigError(RecordgateError):
    """The configuration file or command line is invalid."""


class ConnectorNotFound(ConfigError):
    """No storage connector is registered under the requested name."""


class DriverMissing(ConfigError):
    """The configured storage needs a Python package that is not installed (or cannot be
    imported); the message names the extra that installs it."""


class ClusterUnavailable(RecordgateError):
    """A cluster node cannot reach the Redis its ``cluster.url`` names (at start; once running,
    a node rides out Redis outages and recovers)."""


class CommitConflict(RecordgateError):
    """A cluster node's write was computed from a state of the record that is no longer the
    cluster's; ``current`` is the record now (None: it does not exist). The write runs again."""

    def __init__(self, current: Any) -> None:
        super().__init__("the record changed on another node")
        self.current = current


class ProtocolError(RecordgateError):
    """Bytes that are not a valid deepstream message."""


class MessageParseError(ProtocolError):
    """The frame is not a length-delimited protobuf ``Message`` of a known shape."""


class UnknownTopic(ProtocolError):
    def __init__(self, topic: int) -> None:
        super().__init__(f"unknown topic {topic}")
        self.topic = topic


class UnknownAction(ProtocolError):
    def __init__(self, topic: int, action: int) -> None:
        super().__init__(f"unknown action {action} on topic {topic}")
        self.topic = topic
        self.action = action


class LoneSurrogateText(ProtocolError):
    """A string field holds a lone UTF-16 surrogate, as protobuf.js encodes one (3 bytes, not
    UTF-8). ``message`` is the message read with those kept, so the reply can echo its name."""

    def __init__(self, message: object) -> None:
        super().__init__("a string field holds a lone UTF-16 surrogate")
        self.message = message


class MessageTooLarge(ProtocolError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


class InvalidData(RecordgateError):
    """A well-formed message whose payload cannot be used: bad JSON, a hostile path, ..."""


class LimitExceeded(InvalidData):
    """The message asks for more than a configured limit allows; ``key`` is its config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{message} ({key})")
        self.key = key


class InvalidJSON(InvalidData):
    """JSON text refused by ``gateway.protocol.payload.loads``; ``reason`` is one of its
    ``REASONS`` (``invalid``, ``non_finite_number``, ``lone_surrogate``, ``too_deep``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class UnencodableData(RecordgateError):
    """A value that has no JSON text (non-finite number, lone surrogate, too deep): it reached
    the server from outside its edge checks, e.g. a row written behind its back."""


class StorageError(RecordgateError):
    """A storage connector failed; connectors translate driver errors into a subclass."""


class StorageUnavailable(StorageError):
    """The database cannot be reached."""


class StorageTimeout(StorageError):
    """The database did not answer within the configured timeout."""


class StorageRejected(StorageError):
    """The database refused the operation (bad data, constraint, permissions)."""


def storage_error_kind(exc: BaseException) -> str:
    """``exc``'s kind as the storage error counters of ``/metrics`` name it: ``unavailable``,
    ``timeout``, ``rejected``, or ``other`` (anything else, driver errors among them)."""
    if isinstance(exc, StorageUnavailable):
        return "unavailable"
    if isinstance(exc, StorageTimeout):
        return "timeout"
    return "rejected" if isinstance(exc, StorageRejected) else "other"


class WriteDiscarded(StorageError):
    """Storage held a newer version and the conflict policy resolved the record without this
    write (``storage-wins``; ``merge`` if the merged record lost its change): never durable."""


class RecordsUnavailable(StorageUnavailable):
    """A cluster node cannot reach Redis, the authority of record versions: it neither commits
    a change nor reads a record it does not hold (docs/cluster.md)."""


class RedisUnreachable(RecordsUnavailable):
    """A cluster node's read of a record failed because Redis did not answer (not because its
    bus lagged): the node may serve what it cached instead (docs/cluster.md, "Redis away")."""


class BackPressure(StorageError):
    """The write-behind queue holds as many pending records (or bytes) as it may; retry later.
    ``key`` names the limit reached."""

    def __init__(self, message: str, key: str = "write_behind.max_pending") -> None:
        super().__init__(message)
        self.key = key


class ClientError(RecordgateError):
    """Raised by :mod:`gateway.client`."""


class NotConnected(ClientError):
    """The client has no open, authenticated connection."""


class AuthenticationFailed(ClientError):
    """The server refused the login."""


class RecordError(ClientError):
    """A record operation failed; ``code`` is the deepstream action name."""

    def __init__(self, code: str, name: str, detail: object = None) -> None:
        super().__init__(f"{code} for record {name!r}" + (f": {detail}" if detail else ""))
        self.code = code
        self.name = name
        self.detail = detail


class RpcError(ClientError):
    """An RPC failed; ``code`` is the deepstream action name or the provider's error text."""

    def __init__(self, code: str, name: str) -> None:
        super().__init__(f"{code} for RPC {name!r}")
        self.code = code
        self.name = name


class RequestTimeout(ClientError):
    """The server did not answer in time."""
