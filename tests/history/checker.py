"""The history check: what many clients saw of many records, judged against the record rules.

A history is what clients were told by the server (``Observation``: a record's version and, where
the message carries it, its value), what they wrote and how each write ended (``Write``), and
what storage held at the end (observations with ``source="storage"``). ``check`` returns every
broken rule as a ``Violation``; an empty list is a pass. The rules, by name:

- ``one-value``: a version of a record never carries two values, across every client, node,
  message kind (update, read, conflict answer, acknowledged write) and storage.
- ``increasing``: each client sees each record's versions only go up (equal is allowed: a read
  or a conflict answer may repeat the version the client holds).
- ``no-gap``: a client that only subscribes gets every version once, in order, on one
  connection: after version v the next update is v+1 (not v again, not v+2).
- ``acked-lost``: an acknowledged write's value appears at a version (its own version when it
  was written with one); acknowledged means durable, it cannot vanish unseen.
- ``acked-misplaced``: an acknowledged write with an explicit version appears at that version.
- ``refused-applied``: a write answered VERSION_EXISTS (and never sent again) never appears.
- ``applied-twice``: a written value appears at one version at most.
- ``converged``: at the end, every client still running holds each record's last version. A
  writer holds what it wrote: a client applies its own write when it sends it and is not sent
  it back, so its versioned writes count, acknowledged or unknown (no answer in time, as
  after the SIGKILL run's kill, when acknowledgements on survivors came after the clients'
  10 s timeout) if its value appears at its version (``holds``).
- ``storage``: storage ends holding each record's last version, with its value.

Values are compared as canonical JSON; every written value is unique (the workload makes them
so), which is what lets a value name the write it came from.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "NO_VALUE",
    "STORAGE",
    "History",
    "Observation",
    "Source",
    "Violation",
    "Write",
    "canonical",
    "check",
    "holds",
    "summary",
]

Source = Literal["update", "read", "conflict", "head", "ack", "storage", "final"]
Outcome = Literal["acked", "refused", "unknown"]

STORAGE = "storage"
NO_VALUE = object()
"""The value of an observation whose message carries none (a HEAD answer)."""


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Observation:
    """``client`` on ``node`` was told that ``record`` is at ``version`` with ``value``.

    ``conn`` numbers the client's connections (a reconnect starts the next one). A client's
    observations are kept in the order it received them.
    """

    client: str
    node: str
    record: str
    version: int
    value: Any
    source: Source
    conn: int = 0

    def has_value(self) -> bool:
        return self.value is not NO_VALUE

    def where(self) -> str:
        return f"{self.client} on {self.node}, {self.source}"

    def to_json(self) -> dict[str, Any]:
        out = {
            "client": self.client,
            "node": self.node,
            "record": self.record,
            "version": self.version,
            "source": self.source,
            "conn": self.conn,
        }
        if self.has_value():
            out["value"] = self.value
        return out

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Observation:
        return cls(
            item["client"],
            item["node"],
            item["record"],
            int(item["version"]),
            item.get("value", NO_VALUE),
            item["source"],
            int(item.get("conn", 0)),
        )


@dataclass(frozen=True, slots=True)
class Write:
    """``client`` on ``node`` wrote ``value`` to ``record`` at ``version`` (None: forced, the
    server picks the version) and the server acknowledged it, refused it with VERSION_EXISTS, or
    the outcome is unknown (the connection was lost, another error)."""

    client: str
    node: str
    record: str
    version: int | None
    value: Any
    outcome: Outcome

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "node": self.node,
            "record": self.record,
            "version": self.version,
            "value": self.value,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Write:
        version = item.get("version")
        return cls(
            item["client"],
            item["node"],
            item["record"],
            None if version is None else int(version),
            item["value"],
            item["outcome"],
        )


@dataclass
class History:
    observations: list[Observation] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    """Clients that ran to the end (they must have converged); others stopped early."""

    def extend(self, other: History) -> None:
        self.observations += other.observations
        self.writes += other.writes
        self.running |= other.running

    def dump(self, path: Path) -> None:
        """Write the history as JSON lines (``kind``: obs or write), as the JS clients log it."""
        with path.open("w") as out:
            for obs in self.observations:
                out.write(json.dumps({"kind": "obs", **obs.to_json()}) + "\n")
            for write in self.writes:
                out.write(json.dumps({"kind": "write", **write.to_json()}) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        history = cls()
        for line in path.read_text().splitlines():
            item = json.loads(line)
            if item.pop("kind") == "obs":
                history.observations.append(Observation.from_json(item))
            else:
                history.writes.append(Write.from_json(item))
        return history

    def counts(self) -> dict[str, int]:
        return {
            "observations": len(self.observations),
            "writes": len(self.writes),
            "acked": sum(w.outcome == "acked" for w in self.writes),
            "refused": sum(w.outcome == "refused" for w in self.writes),
            "unknown": sum(w.outcome == "unknown" for w in self.writes),
            "clients": len(
                ({o.client for o in self.observations} | {w.client for w in self.writes})
                - {STORAGE}
            ),
            "versions": len({(o.record, o.version) for o in self.observations}),
        }


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def check(history: History, *, limit: int = 50) -> list[Violation]:
    """Every rule ``history`` breaks (at most ``limit`` violations per rule)."""
    found: dict[str, list[Violation]] = defaultdict(list)

    def report(rule: str, message: str) -> None:
        if len(found[rule]) < limit:
            found[rule].append(Violation(rule, message))

    values = _one_value(history.observations, history.writes, report)
    _per_client(history, report)
    _writes(history.writes, values, report)
    _end(history, values, report)
    return [v for rule in sorted(found) for v in found[rule]]


Report = Any  # Callable[[str, str], None]; Any keeps the helpers' signatures short


Values = dict[tuple[str, int], dict[str, Observation]]
"""(record, version) -> each value (canonical JSON) seen there -> its first observation."""


def _one_value(observations: list[Observation], writes: list[Write], report: Report) -> Values:
    """Every value of each (record, version), from every observation with a value and every
    acknowledged write with a version; reports each version seen with a second value."""
    values: Values = defaultdict(dict)
    acked = [
        Observation(w.client, w.node, w.record, w.version, w.value, "ack")
        for w in writes
        if w.outcome == "acked" and w.version is not None
    ]
    for obs in [*observations, *acked]:
        if not obs.has_value():
            continue
        seen = values[(obs.record, obs.version)]
        text = canonical(obs.value)
        if text in seen:
            continue
        if seen:
            first_text, first = next(iter(seen.items()))
            report(
                "one-value",
                f"record {obs.record!r} version {obs.version} carried two values: "
                f"{first_text} ({first.where()}) and {text} ({obs.where()})",
            )
        seen[text] = obs
    return values


def _per_client(history: History, report: Report) -> None:
    writers = {w.client for w in history.writes}
    last: dict[tuple[str, str], Observation] = {}
    for obs in history.observations:
        if obs.client == STORAGE or obs.source == "ack":
            continue
        key = (obs.client, obs.record)
        before = last.get(key)
        last[key] = obs
        if before is None:
            continue
        if obs.version < before.version:
            report(
                "increasing",
                f"{obs.client} saw record {obs.record!r} go from version {before.version} "
                f"({before.node}, {before.source}) down to {obs.version} ({obs.node}, "
                f"{obs.source})",
            )
        elif (
            obs.client not in writers
            and obs.source == "update"
            and obs.conn == before.conn
            and obs.version != before.version + 1
        ):
            what = "again" if obs.version == before.version else "right"
            report(
                "no-gap",
                f"{obs.client} on {obs.node} (one connection) got record {obs.record!r} "
                f"version {obs.version} {what} after version {before.version} "
                f"({before.source})",
            )


def _writes(writes: list[Write], values: Values, report: Report) -> None:
    seen_at: dict[tuple[str, str], set[int]] = defaultdict(set)  # not counting acks
    for (record, version), seen in values.items():
        for text, obs in seen.items():
            if obs.source != "ack":
                seen_at[(record, text)].add(version)
    sent: dict[tuple[str, str], list[Write]] = defaultdict(list)
    for write in writes:
        sent[(write.record, canonical(write.value))].append(write)
    for (record, text), sends in sent.items():
        versions = seen_at.get((record, text), set())
        if len(versions) > 1:
            report(
                "applied-twice",
                f"record {record!r}: the value {text} written by {sends[0].client} appears at "
                f"versions {sorted(versions)}",
            )
        for write in sends:
            if write.outcome != "acked":
                continue
            where = f"{write.client} on {write.node}"
            if not versions:
                at = "forced" if write.version is None else f"at version {write.version}"
                report(
                    "acked-lost",
                    f"record {record!r}: the acknowledged write {text} ({where}, {at}) was "
                    "never seen at any version",
                )
            elif write.version is not None and write.version not in versions:
                report(
                    "acked-misplaced",
                    f"record {record!r}: the write {text} ({where}) was acknowledged at version "
                    f"{write.version} but appears at {sorted(versions)}",
                )
        if versions and all(w.outcome == "refused" for w in sends):
            report(
                "refused-applied",
                f"record {record!r}: the write {text} ({sends[0].client} on {sends[0].node}) "
                f"was refused with VERSION_EXISTS but appears at version {min(versions)}",
            )


def _end(history: History, values: Values, report: Report) -> None:
    newest: dict[str, int] = {}
    for record, version in values:
        newest[record] = max(version, newest.get(record, -1))
    last: dict[tuple[str, str], Observation] = {}
    stored: dict[str, Observation] = {}
    for obs in history.observations:
        if obs.client == STORAGE:
            stored[obs.record] = obs
        elif obs.source != "ack":
            last[(obs.client, obs.record)] = obs
    seen = {
        (record, version, text) for (record, version), texts in values.items() for text in texts
    }
    for write in history.writes:  # a writer is not sent its own write: it holds it
        before = last.get((write.client, write.record))
        if before is None or write.version is None or not holds(write, seen):
            continue
        if write.version > before.version:
            last[(write.client, write.record)] = Observation(
                write.client, write.node, write.record, write.version, write.value, "ack"
            )
    for (client, record), obs in sorted(last.items(), key=lambda item: item[0]):
        if client in history.running and obs.version != newest[record]:
            report(
                "converged",
                f"{client} on {obs.node} ended with record {record!r} at version {obs.version}, "
                f"not the last version {newest[record]}",
            )
    for record, version in sorted(newest.items()):
        text = " or ".join(values[(record, version)])
        obs = stored.get(record)
        if obs is None:
            report("storage", f"record {record!r} (last version {version}) is not in storage")
        elif obs.version != version:
            report(
                "storage",
                f"record {record!r}: storage ends at version {obs.version}, the clients "
                f"converged on version {version} ({text})",
            )


def holds(write: Write, seen: set[tuple[str, int, str]]) -> bool:
    """Whether ``write``'s client holds its version once sent: the write has one (not forced)
    and was acknowledged, or its outcome is unknown and ``seen`` (record, version, canonical
    value) has its value at that version. A refused write, or an unknown one nobody saw at
    its version, does not count."""
    if write.version is None or write.outcome == "refused":
        return False
    if write.outcome == "acked":
        return True
    return (write.record, write.version, canonical(write.value)) in seen


def summary(violations: Iterable[Violation]) -> str:
    return "\n".join(str(v) for v in violations)
