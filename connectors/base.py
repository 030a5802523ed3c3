"""The storage connector contract. Connectors import this module and nothing else of recordgate.

Rules every connector keeps (``conformance/`` checks each):

* ``Put(v)`` applies only if nothing is stored under the name or the stored version is lower.
  The same version with equal data again is an idempotent success (a retry). Anything else is a
  conflict whose result carries the stored snapshot. The check and the write are one atomic
  conditional statement in the database, so concurrent writers of one version yield exactly one
  winner.
* ``Delete(v)`` removes the record unless a newer version is stored (then: conflict, with the
  stored snapshot). Deleting a missing record succeeds. A record can be created again afterwards.
* ``write`` returns one result per operation, in order; a batch can partly succeed.
* Driver errors leave the connector only as ``StorageUnavailable``, ``StorageTimeout`` or
  ``StorageRejected``; no call hangs past the connector's timeout.
* The caller's data is never mutated and JSON round-trips exactly.
* Names may hold ``/`` (several), quotes, unicode, and be at least 500 bytes long.

Capabilities (``Connector.capabilities``) name optional features; the suite skips what is absent:

* ``"raw"``: the connector has ``raw_reader()`` returning a :class:`RawReader`.
* ``"network"``: it talks to a server, so an unreachable address must fail fast with
  ``StorageUnavailable`` or ``StorageTimeout`` (the suite points it at a dead port).

Stored layout: a record ``user/42`` belongs to collection ``user`` (the part before the first
``/``; names without one go to ``DEFAULT_COLLECTION``), its key is the full name, and each stored
item holds name, version, data as a native JSON document, and an update timestamp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Protocol, runtime_checkable

from gateway.exceptions import (
    StorageError,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
)

__all__ = [
    "CAPABILITY_NETWORK",
    "CAPABILITY_RAW",
    "DEFAULT_COLLECTION",
    "JSON",
    "Connector",
    "Delete",
    "Outcome",
    "Put",
    "RawReader",
    "Snapshot",
    "StorageError",
    "StorageRejected",
    "StorageTimeout",
    "StorageUnavailable",
    "SupportsRawReader",
    "WriteResult",
    "collection_of",
]

JSON = dict[str, Any] | list[Any]
"""Record data: a JSON object or array."""

DEFAULT_COLLECTION = "_default"

CAPABILITY_RAW = "raw"
CAPABILITY_NETWORK = "network"


def collection_of(name: str) -> str:
    """The collection of a record name: the part before the first ``/``."""
    head, sep, _ = name.partition("/")
    return head if sep and head else DEFAULT_COLLECTION


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One version of one record. ``version >= 0``; ``data`` is a JSON object or array."""

    name: str
    version: int
    data: JSON


Put = Snapshot
"""Store this snapshot if nothing newer is stored. A put *is* a snapshot: one class, so that a
caller holding snapshots (the gateway's cache) hands them to ``write`` without a copy per row."""


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the record unless a version newer than ``version`` is stored."""

    name: str
    version: int


class Outcome(Enum):
    APPLIED = "applied"
    """Written (or deleted); also a same-version retry with equal data, and deleting nothing."""
    CONFLICT = "conflict"
    """Refused: ``current`` holds what is stored (``None`` only if it vanished meanwhile)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    op: Put | Delete
    outcome: Outcome
    current: Snapshot | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.APPLIED


@runtime_checkable
class Connector(Protocol):
    """A storage backend. Constructed with ``(url: str, **options)``; no I/O before ``open``.

    Every resource owner is an async context manager: ``async with Conn(url) as c: ...``
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]

    async def open(self) -> None:
        """Connect, and create the schema (tables, indexes) if it is missing."""

    async def close(self) -> None: ...

    async def __aenter__(self) -> Connector: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def get(self, name: str) -> Snapshot | None: ...

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        """Snapshots of the names that exist; missing names are absent from the result."""

    async def head(self, name: str) -> int | None:
        """The stored version, or ``None`` if the record does not exist."""

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        """Apply each operation conditionally; one result per operation, in order.

        A name appears at most once per batch (the flusher coalesces).
        """

    def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        """Every stored snapshot whose name starts with ``prefix``, in name order."""


class RawReader(Protocol):
    """Reads the stored layout through the native driver, bypassing the connector's logic.

    The conformance suite uses it to check what is really stored. ``read_raw`` returns a dict
    with at least ``name``, ``version``, ``data`` (decoded JSON), ``collection`` and
    ``updated_at`` (a ``datetime``), or ``None`` if nothing is stored under the name.
    ``count_raw`` counts stored items whose name starts with ``prefix``. A reader opens its own
    connection lazily, independent of the connector's, and is released with ``close``.
    """

    async def read_raw(self, name: str) -> dict[str, Any] | None: ...

    async def count_raw(self, prefix: str = "") -> int: ...

    async def close(self) -> None: ...


@runtime_checkable
class SupportsRawReader(Protocol):
    """A connector declaring the ``"raw"`` capability also has this method."""

    def raw_reader(self) -> RawReader:
        """A new reader of the same store (same URL and options); the caller closes it."""
        ...
