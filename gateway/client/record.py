"""One live record: its version and data as the server last confirmed them, kept in sync.

``RecordCore`` is the shared state for one name; every ``get`` of that name returns its own
``Record`` handle over it, so one handle's ``discard`` drops only that handle's callbacks, and
the server subscription ends with the last handle.

Version invariant: ``version`` is the server's version of ``data``, or one ahead for each local
write still on its way. A remote write applies only at ``version + 1``; one at or below means a
local write raced it, and the server answers that write with VERSION_EXISTS, which the merge
strategy resolves. A gap (a missed write) is repaired by adopting an UPDATE's data, or by
reading the record again.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from ..exceptions import NotConnected, RecordError
from ..protocol import Message, RecordAction, Topic
from . import jsonpath
from .callbacks import invoke
from .merge import MergeStrategy

if TYPE_CHECKING:
    from .records import RecordHandler

__all__ = ["Record", "RecordCore"]

log = logging.getLogger(__name__)

RecordCallback = Callable[[Any], Any]
_WRITES = (RecordAction.UPDATE, RecordAction.PATCH, RecordAction.ERASE, RecordAction.PATCH_MULTI)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class RecordCore:
    def __init__(self, name: str, handler: RecordHandler) -> None:
        self.name = name
        self.handler = handler
        self.version = -1
        self.data: Any = {}
        self.loaded = False
        self.refs = 0
        self.gone: str | None = None
        """Why the record is unusable ('DELETED', 'DISCARDED'), or None while it is live."""
        self.has_provider = False
        self.merge_strategy: MergeStrategy | None = None
        self.resyncing = False
        self.resubscribing = False
        self.callbacks: dict[str | None, list[RecordCallback]] = {}
        self.delete_callbacks: list[Callable[[str], Any]] = []
        self.written: dict[str, Any] = {}
        """What each acknowledged write in flight (by correlation id) left the record holding:
        a remote update adopted meanwhile replaces ``data``, not what the write sent."""

    # -- local state ---------------------------------------------------------------------

    def check_live(self) -> None:
        if self.gone is not None:
            raise RecordError(self.gone, self.name)

    def apply(self, data: Any) -> None:
        """Adopt ``data``; call each path's subscribers if its value changed."""
        old, self.data = self.data, data
        for path, callbacks in list(self.callbacks.items()):
            before, after = jsonpath.get(old, path), jsonpath.get(data, path)
            if before is after or before == after:
                continue
            for callback in list(callbacks):
                invoke(callback, copy.deepcopy(after))

    def adopt(self, version: int, data: Any) -> None:
        self.version = version
        self.apply(data)

    def mark_gone(self, reason: str) -> None:
        self.gone = reason
        self.callbacks.clear()
        if reason == "DELETED":
            for callback in self.delete_callbacks:
                invoke(callback, self.name)
        self.delete_callbacks.clear()

    # -- local writes --------------------------------------------------------------------

    async def write(self, path: str | None, value: Any, *, ack: bool, remove: bool = False) -> None:
        self.check_live()
        conn = self.handler.conn
        if not conn.is_open:
            raise NotConnected(f"cannot write record {self.name!r} while disconnected")
        if remove:
            assert path is not None
            new = jsonpath.erase(self.data, path)
        else:
            new = jsonpath.set_value(self.data, path, copy.deepcopy(value))
        if new == self.data:
            return  # nothing changes: the official client sends nothing either
        if path is None:
            msg = Message(Topic.RECORD, RecordAction.UPDATE, name=self.name, data=dumps(new))
        elif remove:
            msg = Message(Topic.RECORD, RecordAction.ERASE, name=self.name, path=path)
        else:
            msg = Message(
                Topic.RECORD, RecordAction.PATCH, name=self.name, path=path, data=dumps(value)
            )
        self.version += 1
        msg.version = self.version
        self.apply(new)
        if not ack:
            await self.handler.send_write(msg, ack=False)
            return
        cid = msg.correlation_id = self.handler.conn.next_id()
        self.written[cid] = new
        try:
            await self.handler.send_write(msg, ack=True)
        finally:
            self.written.pop(cid, None)

    # -- messages from the server --------------------------------------------------------

    def on_remote_write(self, msg: Message) -> None:
        if self.resyncing or msg.version is None:
            return  # a READ is on its way and will replace everything
        version = msg.version
        if version <= self.version:
            return  # a local write raced this one; its VERSION_EXISTS will settle it
        if msg.action == RecordAction.UPDATE:
            self.adopt(version, json.loads(msg.data or "{}"))
        elif version > self.version + 1:
            self.handler.resync(self)
        else:
            self.adopt(version, self._patched(msg))

    def _patched(self, msg: Message) -> Any:
        if msg.action == RecordAction.PATCH_MULTI:
            data = self.data
            for change in json.loads(msg.data or "[]"):
                data = jsonpath.set_value(data, change["path"], change.get("data"))
            return data
        path = msg.path or ""
        if msg.action == RecordAction.ERASE or msg.data is None:
            return jsonpath.erase(self.data, path)
        return jsonpath.set_value(self.data, path, json.loads(msg.data))

    def on_read(self, version: int, data: Any) -> None:
        if not self.loaded or self.resyncing or version > self.version:
            self.loaded = True
            self.resyncing = False
            self.adopt(version, data)

    def on_head(self, version: int) -> None:
        """The head answer to the SUBSCRIBEANDHEAD sent after a reconnect."""
        self.resubscribing = False
        if version == -1:
            self.handler.forget(self, "DELETED")
        elif version != self.version:
            self.handler.resync(self)

    def on_version_exists(self, msg: Message) -> None:
        """The server refused a write of ours: merge, and write the result back if it differs."""
        cid = msg.correlation_id if msg.is_write_ack else None
        remote_version = msg.version if msg.version is not None else self.version
        remote = json.loads(msg.data) if msg.data is not None else {}
        local = self.data
        strategy = self.merge_strategy or self.handler.merge_strategy
        try:
            merged = strategy(copy.deepcopy(local), self.version, remote, remote_version)
        except Exception as exc:
            log.exception("merge strategy for record %r failed", self.name)
            self.adopt(remote_version, remote)
            self.handler.fail_write(cid, RecordError("VERSION_EXISTS", self.name, exc))
            return
        if merged == remote:
            self.adopt(remote_version, remote)
            wrote = self.written.get(cid, local) if cid else local
            if wrote == remote:
                self.handler.conn.pending.resolve(("write", cid))  # what we wrote is there
            else:
                self.handler.fail_write(cid, RecordError("VERSION_EXISTS", self.name))
            return
        # Write the merge on top of the server's version; an ack keeps the caller's id.
        self.version = remote_version + 1
        self.apply(merged)
        if cid in self.written:
            self.written[cid] = merged
        msg = Message(
            Topic.RECORD,
            RecordAction.UPDATE,
            name=self.name,
            version=self.version,
            data=dumps(merged),
            correlation_id=cid,
            is_write_ack=True if cid else None,
        )
        try:
            self.handler.conn.send(msg)
        except NotConnected as exc:
            self.handler.fail_write(cid, exc)


class Record:
    """A handle on a live record. Read with ``data``/``get``, write with ``set``/``erase``.

    Values handed out are copies: mutating them never changes the record.
    """

    def __init__(self, core: RecordCore) -> None:
        self._core = core
        self._subscriptions: list[tuple[str | None, RecordCallback]] = []
        self._released = False

    def __repr__(self) -> str:
        return f"<Record {self.name!r} v{self.version}>"

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def version(self) -> int:
        return self._core.version

    @property
    def data(self) -> Any:
        return copy.deepcopy(self._core.data)

    @property
    def deleted(self) -> bool:
        return self._core.gone == "DELETED"

    @property
    def has_provider(self) -> bool:
        """Whether a listener accepted to provide this record."""
        return self._core.has_provider

    def get(self, path: str | None = None) -> Any:
        """A copy of the value at ``path`` (the whole data for None); None if absent."""
        return copy.deepcopy(jsonpath.get(self._core.data, path))

    def set_merge_strategy(self, strategy: MergeStrategy | None) -> None:
        """Resolve this record's write conflicts with ``strategy`` (None: the client's)."""
        self._core.merge_strategy = strategy

    def subscribe(
        self, callback: RecordCallback, path: str | None = None, *, trigger_now: bool = False
    ) -> Callable[[], None]:
        """Call ``callback(value)`` whenever the value at ``path`` changes; returns a remover."""
        self._check()
        self._core.callbacks.setdefault(path, []).append(callback)
        entry = (path, callback)
        self._subscriptions.append(entry)
        if trigger_now:
            invoke(callback, self.get(path))

        def unsubscribe() -> None:
            if entry in self._subscriptions:
                self._subscriptions.remove(entry)
                self._drop(path, callback)

        return unsubscribe

    def on_delete(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(name)`` once the record is deleted, here or by another client."""
        self._core.delete_callbacks.append(callback)

    def _drop(self, path: str | None, callback: RecordCallback) -> None:
        callbacks = self._core.callbacks.get(path, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._core.callbacks.pop(path, None)

    def _check(self) -> None:
        if self._released:
            raise RecordError("DISCARDED", self.name)
        self._core.check_live()

    @overload
    async def set(self, data: dict[str, Any] | list[Any], /, *, ack: bool = True) -> None: ...
    @overload
    async def set(self, path: str, value: Any, /, *, ack: bool = True) -> None: ...

    async def set(self, *args: Any, ack: bool = True) -> None:
        """``set(data)`` replaces the data; ``set(path, value)`` sets one value.

        With ``ack`` (the default) this returns once the server confirms the write is durable
        and raises ``RecordError`` if it is refused; without, it returns once sent.
        """
        self._check()
        if len(args) == 1:
            if not isinstance(args[0], dict | list):
                raise TypeError("record data must be a dict or a list; use set(path, value)")
            await self._core.write(None, args[0], ack=ack)
        elif len(args) == 2 and isinstance(args[0], str) and args[0]:
            await self._core.write(args[0], args[1], ack=ack)
        else:
            raise TypeError("use set(data) or set(path, value) with a non-empty path")

    async def erase(self, path: str, *, ack: bool = True) -> None:
        """Remove the key at ``path``."""
        self._check()
        await self._core.write(path, None, ack=ack, remove=True)

    async def delete(self) -> None:
        """Delete the record on the server; every handle on it becomes unusable."""
        self._check()
        await self._core.handler.delete(self._core)

    async def discard(self) -> None:
        """Release this handle; the last handle of a name unsubscribes from the server."""
        if self._released:
            return
        self._released = True
        for path, callback in self._subscriptions:
            self._drop(path, callback)
        self._subscriptions.clear()
        await self._core.handler.release(self._core)

    async def __aenter__(self) -> Record:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.discard()
