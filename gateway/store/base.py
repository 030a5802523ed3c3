"""The interface between the record handler and whatever keeps records.

Invariants the handler relies on:

* A ``Record`` is an immutable snapshot: a write makes a new ``Record`` and hands it to
  ``put``; nobody mutates ``data`` in place, so the flusher may hold and serialise a snapshot
  while newer versions are applied.
* ``cached`` answers synchronously from memory; it is the hot path and never does I/O.
* Per name, the handler calls ``put`` with strictly rising versions; ``put`` never waits for
  the database (write-behind) and may raise ``BackPressure`` when too much is pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from connectors.base import Snapshot

from ..histogram import Histogram

__all__ = ["Record", "RecordStore", "StoreStats"]

Record = Snapshot
"""One snapshot of one record: ``name``, ``version``, ``data``. It is the connector contract's
``Snapshot`` (and so its ``Put``): the flusher hands the snapshots it holds to storage as they
are, without a copy per row written (which cost about a tenth of the SQLite flush)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters for metrics. ``pending``: operations not yet in storage (queued or in flight);
    ``dirty``: records with such operations; ``cached``: records in memory."""

    pending: int
    dirty: int
    cached: int
    flushed: int
    retried: int
    failed: int
    conflicts: int
    cached_bytes: int = 0
    """JSON bytes of the cached records (their ``size`` estimates)."""
    waiters: int = 0
    """Write acknowledgements waiting for durability."""
    loads_waiting: int = 0
    """Storage reads waiting for a free slot."""
    flush_seconds: Histogram | None = None
    """How long each storage write of a batch took (attempts that failed included)."""
    errors: dict[str, int] = field(default_factory=dict)
    """Storage errors by kind: ``unavailable``, ``timeout`` (retried), ``rejected`` and
    ``other`` (an operation failed for good)."""
    reverted: int = 0
    """States storage refused for good that were replaced with storage's state."""


class RecordStore(Protocol):
    on_external_change: Callable[[str, Record | None], None] | None
    """Set by the record handler: storage delivered a snapshot that differs from what was
    served (a conflict resolved in storage's favour); ``None`` means the record is gone."""

    @property
    def stats(self) -> StoreStats:
        """Counters for metrics; cheap enough to read on every scrape."""

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Flush everything pending, then release resources."""

    def cached(self, name: str) -> Record | None:
        """The cached snapshot, if any; no I/O."""

    async def load(self, name: str) -> Record | None:
        """Cache, then storage on a miss (populating the cache). ``None``: no such record.

        Concurrent loads of one name share one storage read.
        """

    async def load_many(self, names: list[str]) -> dict[str, Record | None]:
        """``load`` of each name, reading those not cached from storage in one call."""

    def put(self, record: Record) -> None:
        """Make ``record`` the current snapshot and schedule it for storage."""

    async def durable(self, name: str, version: int) -> None:
        """Return once ``version`` (or a newer one) of ``name`` is in storage."""

    def watch(self, name: str, version: int) -> Awaitable[None]:
        """``durable``, but the wait starts (and counts toward the store's bounds) at the call,
        not at the first await."""

    async def delete(self, name: str) -> asyncio.Future[None]:
        """Remove from cache and storage; queued writes of the name are superseded.

        The name reads as absent at once; the storage delete is write-behind like ``put``: the
        future returned resolves once storage has it, or fails (``StorageError``) if it never
        will. May raise ``BackPressure``.
        """

    def forget(self, name: str) -> None:
        """Drop ``name`` from the cache (storage changed behind our back: NOTIFY)."""
