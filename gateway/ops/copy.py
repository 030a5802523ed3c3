"""Copy snapshots into a connector with conditional puts: safe to run twice, or after a crash.

For each batch the target's versions are read first (``get_many``), and a snapshot is

* **copied** when the target lacks the record or holds a lower version (a conditional
  :class:`~connectors.base.Put`, so a concurrent writer is never overwritten),
* **up to date** when the target holds the same version with equal data (nothing is written),
* **newer in target** when the target holds a higher version (left alone),
* **failed** when the target holds the same version with *different* data (diverged: left
  alone and named), or refuses the put (alone: the rest of its batch is written one by one),
  or cannot hold its name (U+0000 where the target declares ``NUL``: never sent to it, since
  such a name fails every call, the batch's ``get_many`` included).

``StorageUnavailable`` and ``StorageTimeout`` stop the copy: what was written stays, and a rerun
goes on from there.

Memory holds one batch: the source is an async iterator read as it is consumed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

from connectors.base import (
    NUL,
    Connector,
    Outcome,
    Put,
    Snapshot,
    StorageTimeout,
    StorageUnavailable,
    cannot_hold,
)

from ..store.merge import json_equal

__all__ = ["CopySummary", "copy_records"]

MAX_NAMED_FAILURES = 100


@dataclass
class CopySummary:
    copied: int = 0
    up_to_date: int = 0
    newer_in_target: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    """``(name, reason)`` of the first :data:`MAX_NAMED_FAILURES` failures."""

    @property
    def done(self) -> int:
        return self.copied + self.up_to_date + self.newer_in_target + self.failed

    def fail(self, name: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_NAMED_FAILURES:
            self.failures.append((name, reason))

    def lines(self) -> list[str]:
        out = [
            f"copied: {self.copied}",
            f"already up to date: {self.up_to_date}",
            f"newer in target: {self.newer_in_target}",
            f"failed: {self.failed}",
        ]
        out += [f"  failed {name!r}: {reason}" for name, reason in self.failures]
        if self.failed > len(self.failures):
            out.append(f"  ... and {self.failed - len(self.failures)} more")
        return out


async def copy_records(
    source: AsyncIterable[Snapshot],
    target: Connector,
    *,
    batch_size: int = 500,
    on_batch: Callable[[CopySummary], None] | None = None,
) -> CopySummary:
    """Copy every snapshot of ``source`` into ``target``; see the module docstring."""
    summary = CopySummary()
    batch: dict[str, Snapshot] = {}
    async for snapshot in source:
        if snapshot.name in batch:  # a name twice (an import file): the later line wins
            await _copy_batch(batch, target, summary)
            batch = {}
        batch[snapshot.name] = snapshot
        if len(batch) >= batch_size:
            await _copy_batch(batch, target, summary)
            batch = {}
            if on_batch is not None:
                on_batch(summary)
    if batch:
        await _copy_batch(batch, target, summary)
    if on_batch is not None:
        on_batch(summary)
    return summary


async def _copy_batch(batch: dict[str, Snapshot], target: Connector, summary: CopySummary) -> None:
    if NUL in cannot_hold(target):
        for name in [name for name in batch if "\x00" in name]:
            del batch[name]
            summary.fail(name, "the target cannot hold U+0000 in a record name")
        if not batch:
            return
    stored = await target.get_many(list(batch))
    puts: list[Put] = []
    for name, snapshot in batch.items():
        current = stored.get(name)
        if current is None or current.version < snapshot.version:
            puts.append(snapshot)
        else:
            _settle(snapshot, current, summary)
    if not puts:
        return
    try:
        results = await target.write(puts)
    except (StorageUnavailable, StorageTimeout):
        raise  # the caller stops; a rerun resumes
    except Exception:  # refused, or a connector choking on one record: find which
        results = []
        for put in puts:
            try:
                results.extend(await target.write([put]))
            except (StorageUnavailable, StorageTimeout):
                raise
            except Exception as exc:
                summary.fail(put.name, f"refused by the target: {type(exc).__name__}: {exc}")
    for result in results:
        written = result.op
        assert isinstance(written, Snapshot)
        if result.outcome is Outcome.APPLIED:
            summary.copied += 1
        elif result.current is None:
            summary.fail(written.name, "conflict, and the target's version vanished")
        else:
            _settle(written, result.current, summary)


def _settle(ours: Snapshot, theirs: Snapshot, summary: CopySummary) -> None:
    if theirs.version > ours.version:
        summary.newer_in_target += 1
    elif theirs.version == ours.version and json_equal(theirs.data, ours.data):
        summary.up_to_date += 1
    else:
        summary.fail(
            ours.name,
            f"the target holds version {theirs.version} with different data (diverged)",
        )
