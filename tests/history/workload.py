"""Python clients for the history run: the project's asyncio client, with every RECORD message
it receives logged as an observation before the client handles it.

Three roles, each one ``gateway.client.Client`` on one node:

- ``subscriber``: holds every record live and writes nothing (the no-gap rule applies to it);
- ``writer``: holds every record live and writes whole values at the version it holds + 1
  (``Record.set``, acknowledged): concurrent writers on other nodes make it conflict;
- ``forcer``: holds nothing and writes at version -1 (``set_data``: the server picks the
  version), acknowledged.

Observations come from the wire (the tap), not from the client's record state: the client
drops a version at or below the one it holds, so its state alone could never show a version
going down. Written values are unique (``{"w": client, "n": count}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from typing import Any

from gateway.client import Client, ConnectionState, Record
from gateway.exceptions import ClientError, RecordError
from gateway.protocol import Message, RecordAction, Topic

from .checker import NO_VALUE, History, Observation, Source, Write, holds

__all__ = ["HistoryClient", "RecordsRefused"]

R = RecordAction
_SOURCES: dict[int, Source] = {
    R.UPDATE: "update",
    R.READ_RESPONSE: "read",
    R.VERSION_EXISTS: "conflict",
    R.HEAD_RESPONSE: "head",
}


class RecordsRefused(AssertionError):
    """The server refused record messages outright (a cluster without clustered records)."""


class HistoryClient:
    """One client of the run; ``failover()`` names the node to reconnect to when its node dies
    (as a load balancer would route it), or None to keep retrying the same one."""

    def __init__(
        self,
        name: str,
        role: str,
        node: str,
        url: str,
        records: list[str],
        *,
        failover: Callable[[], tuple[str, str] | None] | None = None,
        pause: float = 0.02,
    ) -> None:
        self.name, self.role, self.node, self.records = name, role, node, records
        self.history = History(running={name})
        self.errors: list[str] = []
        self.pause = pause
        self.conn = 0
        self._failover = failover
        self._live: list[Record] = []
        self._count = 0
        self.client = Client(
            url,
            auth={"username": name},
            request_timeout=10.0,
            reconnect_delay=0.1,
            max_reconnect_delay=1.0,
        )
        handle = self.client.record._handle

        def tapped(msg: Message) -> None:
            self._tap(msg)
            handle(msg)

        self.client.connection.register(Topic.RECORD, tapped)
        self.client.on_state_change(self._on_state)
        self.client.on_error(lambda error: self.errors.append(str(error)))

    # -- the log -------------------------------------------------------------------------

    def _observe(self, record: str, version: int, value: Any, source: Source) -> None:
        self.history.observations.append(
            Observation(self.name, self.node, record, version, value, source, self.conn)
        )

    def _tap(self, msg: Message) -> None:
        action, name = msg.action, msg.name or ""
        source = _SOURCES.get(action)
        if source is not None and msg.version is not None:
            if action == R.HEAD_RESPONSE:
                value: Any = NO_VALUE
            else:
                value = json.loads(msg.data) if msg.data is not None else NO_VALUE
            self._observe(name, msg.version, value, source)
        elif action == R.HEAD_RESPONSE_BULK:
            for each, version in (msg.versions or {}).items():
                self._observe(each, version, NO_VALUE, "head")
        elif action == R.PATCH:
            self._observe(name, msg.version or 0, NO_VALUE, "update")
        elif action == R.MESSAGE_DENIED:
            self.errors.append(f"MESSAGE_DENIED for {name}: {msg.data}")

    def _on_state(self, state: ConnectionState) -> None:
        if state is ConnectionState.RECONNECTING:
            self.conn += 1
            target = self._failover() if self._failover is not None else None
            if target is not None:
                self.node, self.client.connection.url = target

    # -- running -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.connect()
        if self.role in ("subscriber", "writer"):
            try:
                self._live = [await self.client.record.get(name) for name in self.records]
            except RecordError as exc:
                raise RecordsRefused(f"{self.name} on {self.node}: {exc}; {self.errors}") from exc

    async def run(self, stop: asyncio.Event) -> None:
        """Write until ``stop`` is set (subscribers just wait)."""
        if self.role == "subscriber":
            await stop.wait()
            return
        while not stop.is_set():
            await self.write_once()
            if self.pause:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), random.uniform(0, self.pause))

    async def write_once(self) -> None:
        index = random.randrange(len(self.records))
        name = self.records[index]
        self._count += 1
        value = {"w": self.name, "n": self._count}
        version: int | None = None
        try:
            if self.role == "writer":
                record = self._live[index]
                version = record.version + 1  # Record.set sends exactly this, synchronously
                await record.set(value)
            else:
                await self.client.record.set_data(name, value)
            outcome = "acked"
        except RecordError as exc:
            outcome = "refused" if exc.code == "VERSION_EXISTS" else "unknown"
            if exc.code not in ("VERSION_EXISTS",):
                self.errors.append(str(exc))
        except ClientError as exc:
            outcome = "unknown"
            self.errors.append(str(exc))
        self.history.writes.append(Write(self.name, self.node, name, version, value, outcome))

    async def read_all(self) -> None:
        """A fresh READ of every record (a reader holds none live): the tap logs the answers."""
        for name in self.records:
            await self.client.record.snapshot(name)

    def last_versions(self, seen: set[tuple[str, int, str]]) -> dict[str, int]:
        """The last version this client was told of per record, or wrote (its own writes are
        not sent back to it): acknowledged, or unknown and seen at its version in ``seen``
        (record, version, canonical value), as the checker's ``converged`` rule counts."""
        last: dict[str, int] = {}
        for obs in self.history.observations:
            last[obs.record] = obs.version
        for write in self.history.writes:
            if holds(write, seen):
                assert write.version is not None  # holds() is never true of a forced write
                last[write.record] = max(write.version, last.get(write.record, -1))
        return last

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()
