"""The storage connector contract. Connectors import this module and nothing else of recordgate.

``docs/connectors.md`` is the long form; ``conformance/`` checks every rule, and each failure
message starts with ``rule:`` and the rule broken. In short:

Construction and lifecycle

* ``Cls(url, **options)`` does no I/O. Options may arrive as strings. Every connector accepts
  ``timeout`` (seconds, default 5): no call (``open``, ``close``, reads, ``write``, each step of a
  ``scan``, ``drop``, the raw reader's calls) lasts longer, including against a server that
  accepts connections and never answers, or one that stops answering mid-call. Every connector
  also accepts ``page_size`` (records per scan page; accepted and ignored by one that does not
  page). A missing driver is ``gateway.exceptions.DriverMissing`` naming the extra
  (``connectors._common.import_driver``), raised by the constructor or ``open()``.
* Calls before ``open()`` or after ``close()`` raise ``StorageUnavailable``. ``open()`` twice,
  ``close()`` twice, ``close()`` without ``open()`` are harmless; a closed connector can be opened
  again. ``open()`` creates the schema if missing, idempotently, also when two processes open at
  once. One instance accepts concurrent calls from many tasks of its event loop.
* A connector with ``namespace_option`` (the option separating one store from another: a table,
  an index prefix, a key prefix) has ``async drop()``: on an open connector, remove everything of
  that namespace. The suite sets a fresh namespace per run and drops it at the end.

Writes (``write(ops)``: one result per operation, in the order given; a name at most once)

* ``Put(v)`` applies only if nothing is stored under the name or the stored version is lower.
  The same version with equal data (:func:`data_equal`) again is an idempotent success (a
  retry). Anything else is a conflict whose result carries the stored snapshot. The check and the
  write are one atomic conditional operation in the database, so concurrent writers of one
  version, from any number of instances or processes, yield exactly one winner.
* ``Delete(v)`` removes the record unless a newer version is stored (then: conflict, with the
  stored snapshot). Deleting a missing record succeeds. A record can be created again afterwards,
  from any version.
* Versions are exact integers in ``0 .. 2**63 - 1``, compared exactly everywhere (never as
  doubles, in Lua, JavaScript or JSON).
* **Committed** when ``write`` returns: every applied result is durable as the backend's
  strongest ordinary commit makes it, and survives the database *process* being killed (SQL:
  the transaction committed; Redis: AOF enabled, checked at ``open()``, which refuses to start
  without it unless an explicit option accepting the risk is set and logged; MongoDB:
  ``w: "majority", j: true``; Elasticsearch: the translog fsynced per request, no refresh
  needed; RethinkDB: ``durability: "hard"``). A result is never reported before that.
* ``write`` raising means the batch may be applied in part, fully or not at all; the caller
  retries the same operations, so a retry of an applied put must be the idempotent success. The
  one exception: data that is not JSON is ``StorageRejected`` before anything is written.

Errors, and what the gateway's flusher does with each (``gateway/store/cached.py``)

* Driver errors leave the connector only as the project's storage errors, chained with
  ``raise ... from``: ``StorageUnavailable`` (cannot reach or use the database; the flusher
  retries the whole batch with exponential backoff), ``StorageTimeout`` (did not finish within
  ``timeout``, including contention such as deadlocks; retried the same way), ``StorageRejected``
  (the database refused this operation and would refuse it again: bad data, a name too long for
  the backend, permissions; the flusher then writes the batch's operations one by one, and an
  operation rejected on its own fails: it is counted, logged, and its acknowledgement is an
  error). Any other exception (a connector bug, or a driver error it lets through, such as
  ``UnicodeEncodeError``) is treated as ``StorageRejected``: it must not stall the records
  behind it, so the batch is split and the operation that raises alone fails. After any error
  the next call works again as soon as the database does (reconnecting is the connector's job).

Data

* Record data is JSON as ``json.loads`` builds it: dicts with ``str`` keys, lists, ``str``,
  ``int``, finite ``float``, ``bool``, ``None``. It round-trips exactly: ``1``, ``1.0`` and
  ``True`` stay apart (``-0.0`` may come back as ``0.0``); key order need not be kept; unicode,
  deep nesting, empty keys, keys with ``.``/``$`` or named like the layout's own fields, arrays
  as top-level data. Integers beyond ``±(2**53 - 1)`` either round-trip exactly or the put is
  ``StorageRejected``; they are never rounded.
* Not JSON, so ``StorageRejected`` before anything of the batch is written: NaN, infinities, and
  values of any other type (sets, bytes, ``Decimal``, objects). Tuples and non-``str`` keys are
  never passed by the gateway; a connector refuses them or stores their JSON form (a list; the
  key ``1`` as ``"1"``).
* Equal data (the idempotent retry) is :func:`data_equal`: JSON equality with key order
  ignored, where ints, floats and booleans are different kinds: ``1``, ``1.0`` and ``True`` are
  three different values (``0.0`` and ``-0.0`` are equal).
* The caller's data is never mutated, and what reads return shares nothing with it.
* What a backend cannot hold it may declare up front, so the gateway refuses such a write at
  once instead of accepting it and undoing it when the flush is refused: an optional attribute
  ``cannot_hold`` (a frozenset, set by the constructor, no I/O), read through
  :func:`cannot_hold`. The one kind known is :data:`NUL`: U+0000 in a string or a key of the
  data, or in a record name (PostgreSQL's JSONB and text). A connector declares only what it
  really refuses, always with ``StorageRejected``; everything it does not declare round-trips.
  Declaring nothing is allowed: a refusal the gateway cannot foresee is still handled by the
  flusher.

Names and scans

* Names are non-empty strings of unicode characters: ``/`` (several), quotes, ``.``, ``$``,
  ``%``, ``_``, ``*``, spaces, any unicode, at least 500 bytes of UTF-8, and U+0000 unless the
  connector declares :data:`NUL` (then the gateway never passes such a name, and a put of one
  is ``StorageRejected``). Distinct strings are distinct records (no case folding,
  normalisation, trailing-space padding, or cutting at U+0000). A name the backend cannot
  store is ``StorageRejected``, never truncated.
* ``scan(prefix)`` yields every snapshot whose name starts with ``prefix`` (a plain string
  prefix, case-sensitive, no character a wildcard), in code-point order as Python's ``sorted``
  (not UTF-16 order), each name once. During concurrent writes: a name stored for the whole scan
  is yielded exactly once, with a version stored at some point of the scan; names written or
  deleted meanwhile may or may not appear. Pages continue after the last name yielded (keyset
  paging), never by offset.

Capabilities (``Connector.capabilities``) name optional features; the suite skips what is absent:

* ``"raw"``: the connector has ``raw_reader()`` returning a :class:`RawReader`.
* ``"fenced"``: the connector keeps the fencing rules above (a cluster node requires it).
* ``"network"``: it talks to a server over TCP. The suite aims the connector at servers of its
  own (a refused port, a listener that never answers, a proxy it can freeze or cut) by rewriting
  the URL's address: by default the ``host:port`` of the URL; a connector whose URLs need more
  (several hosts, sockets, a scheme with no port) defines the classmethods
  ``url_for(url, host, port) -> str | None`` (the same URL, credentials, database and options,
  aimed at one TCP ``host:port``; ``None`` for a URL with no server) and
  ``server_address(url) -> tuple[str, int] | str | None`` (where the server of ``url`` listens:
  ``(host, port)``, a unix socket path, or ``None``).

Fencing (the ``"fenced"`` capability; the cluster's guard against a stalled writer)

* A fenced connector keeps, per name, the highest fence of the fenced operations applied to it
  (``Put.fence``, ``Delete.fence``; ``None`` is an unfenced op). The fence is kept when the
  record is deleted, and a fenced delete of a missing record records its fence too: a
  *tombstone*, invisible as a record to ``get``, ``get_many``, ``head``, ``scan`` and the raw
  reader's ``read_raw`` and ``count_raw``.
* A fenced op whose fence is lower than the name's stored fence is refused: ``Outcome.FENCED``,
  ``fence`` = the stored fence, ``current`` as for a conflict (the stored snapshot, or ``None``
  for a deleted or absent record); nothing stored changes, not even the timestamp or the fence.
* Otherwise (fence >= stored, or none stored) the version rules apply exactly as unfenced; if
  the op applies (also an idempotent retry, or deleting nothing) the stored fence becomes
  ``max(stored, fence)``. A conflict changes nothing, the fence included.
* The fence check, the version check and the write are one atomic conditional operation in the
  database: concurrent fenced writers can never apply a lower fence after a higher one.
* Unfenced ops ignore fences (version rules alone) and leave a stored fence as it is (an
  unfenced delete may keep it as a tombstone or drop it).
* Fences are exact integers ``0 .. 2**63 - 1``, compared exactly; committed with the write
  (they survive a reopen and the database process being killed as the write does). A batch may
  mix fenced and unfenced ops. Where fences and tombstones live is the connector's choice,
  documented for data teams in ``docs/connectors.md``.

Stored layout: a record ``user/42`` belongs to collection ``user`` (the part before the first
``/``; names without one, or starting with one, go to ``DEFAULT_COLLECTION``), its key is the
full name, and each stored item holds name, version, data as a native JSON document, and an
update timestamp (UTC) that moves on every applied write (a refused write or an idempotent
retry changes nothing stored, not even the timestamp).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol, runtime_checkable

from gateway.exceptions import (
    StorageError,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
)

__all__ = [
    "CAPABILITY_FENCED",
    "CAPABILITY_NETWORK",
    "CAPABILITY_RAW",
    "DEFAULT_COLLECTION",
    "JSON",
    "NUL",
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
    "cannot_hold",
    "collection_of",
    "data_equal",
]

JSON = dict[str, Any] | list[Any]
"""Record data: a JSON object or array."""

DEFAULT_COLLECTION = "_default"

CAPABILITY_RAW = "raw"
CAPABILITY_NETWORK = "network"
CAPABILITY_FENCED = "fenced"

NUL = "nul"
"""In ``cannot_hold``: the character U+0000 anywhere in the data (a string or an object key) or
in a record name."""


def collection_of(name: str) -> str:
    """The collection of a record name: the part before the first ``/``."""
    head, sep, _ = name.partition("/")
    return head if sep and head else DEFAULT_COLLECTION


def cannot_hold(connector: object) -> frozenset[str]:
    """What ``connector`` declares it cannot hold (``NUL``); empty if it declares nothing."""
    return frozenset(getattr(connector, "cannot_hold", ()))


def data_equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are the same record data (the contract's idempotent retry).

    Objects are equal with the same keys and equal values, in any key order; arrays element by
    element; numbers only within one kind (``1`` is not ``1.0``, ``True`` is not ``1``), by value
    (``0.0 == -0.0``); strings and ``None`` by value.
    """
    if a is b:
        return True
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(data_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(data_equal, a, b))
    # bool before int: True is an int to Python, not to JSON.
    for kind in (bool, int, float, str):
        if isinstance(a, kind) or isinstance(b, kind):
            return isinstance(a, kind) and isinstance(b, kind) and bool(a == b)
    return a is None and b is None


@dataclass(slots=True)
class Snapshot:
    """One version of one record. ``version >= 0``; ``data`` is a JSON object or array.

    Immutable by contract: nothing assigns a field after construction (a new version is a new
    snapshot). Not ``frozen=True``: its ``__init__`` sets each field through
    ``object.__setattr__``, which costs ~6,000 instructions more per snapshot on Python 3.11,
    and the record handler makes one per write (5% of a paced update's instructions)."""

    name: str
    version: int
    data: JSON
    size: int = field(default=0, compare=False, repr=False)
    """Length of ``data``'s JSON text if the gateway knows it (an estimate; 0: unknown). It
    bounds record and cache sizes without serialising; connectors ignore it."""
    fence: int | None = field(default=None, compare=False, repr=False)
    """As a put to a ``"fenced"`` connector: refuse it if a higher fence was applied to the
    name. ``None``: unfenced. Snapshots returned by reads always have ``None``."""


Put = Snapshot
"""Store this snapshot if nothing newer is stored. A put *is* a snapshot: one class, so that a
caller holding snapshots (the gateway's cache) hands them to ``write`` without a copy per row."""


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the record unless a version newer than ``version`` is stored (and, on a
    ``"fenced"`` connector, unless a fence higher than ``fence`` was applied to the name)."""

    name: str
    version: int
    fence: int | None = None


class Outcome(Enum):
    APPLIED = "applied"
    """Written (or deleted); also a same-version retry with equal data, and deleting nothing."""
    CONFLICT = "conflict"
    """Refused: ``current`` holds what is stored (``None`` only if it vanished meanwhile)."""
    FENCED = "fenced"
    """Refused because a write with a higher fence was applied to this name: ``fence`` holds
    the stored fence, ``current`` what is stored (``None`` if the record is deleted or absent)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    op: Put | Delete
    outcome: Outcome
    current: Snapshot | None = None
    fence: int | None = None
    """For ``FENCED``: the stored fence. ``None`` for every other outcome."""

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
