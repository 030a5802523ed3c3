"""Records: live records by name, one-off reads and writes, and listening.

Replies are matched by name (READ_RESPONSE, HEAD_RESPONSE, DELETE_SUCCESS) or by correlation id
(write acknowledgements). After a reconnect every live record is subscribed again with
SUBSCRIBEANDHEAD, as the official client does, and read again if its version moved.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from ..exceptions import ClientError, NotConnected, RecordError
from ..protocol import Message, RecordAction, Topic
from .connection import Connection, ack_key
from .listen import Listener, Listening
from .merge import MergeStrategy
from .record import _WRITES, Record, RecordCore, dumps

__all__ = ["RecordHandler"]

log = logging.getLogger(__name__)

_READS = frozenset(
    {
        RecordAction.READ,
        RecordAction.SUBSCRIBEANDREAD,
        RecordAction.SUBSCRIBECREATEANDREAD,
        RecordAction.SUBSCRIBECREATEANDUPDATE,
    }
)
_HEADS = frozenset({RecordAction.HEAD, RecordAction.SUBSCRIBEANDHEAD})
_BENIGN = frozenset({RecordAction.MULTIPLE_SUBSCRIPTIONS, RecordAction.NOT_SUBSCRIBED})


class RecordHandler(Listening):
    def __init__(self, conn: Connection, *, merge_strategy: MergeStrategy) -> None:
        self.conn = conn
        self.merge_strategy = merge_strategy
        self._cores: dict[str, RecordCore] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._listener = Listener(conn, Topic.RECORD, RecordAction, RecordError)
        conn.register(Topic.RECORD, self._handle)
        conn.on_reestablished(self._on_reestablished)

    def names(self) -> list[str]:
        """The names of the records this client holds live."""
        return list(self._cores)

    # -- live records --------------------------------------------------------------------

    async def get(self, name: str) -> Record:
        """A live handle on record ``name``, created empty (version 0) if it does not exist."""
        if not name:
            raise ValueError("record name must not be empty")
        core = self._cores.get(name)
        if core is None:
            core = self._cores[name] = RecordCore(name, self)
            self._loading[name] = asyncio.ensure_future(self._load(core))
        core.refs += 1
        loading = self._loading.get(name)
        try:
            if loading is not None:
                await asyncio.shield(loading)
        except BaseException:
            core.refs -= 1
            raise
        return Record(core)

    async def _load(self, core: RecordCore) -> None:
        msg = self.conn.bulk(Topic.RECORD, RecordAction.SUBSCRIBECREATEANDREAD, [core.name])
        try:
            await self.conn.request(msg, ("read", core.name))
        except BaseException:
            if self._cores.get(core.name) is core:
                del self._cores[core.name]
            raise
        finally:
            self._loading.pop(core.name, None)

    async def release(self, core: RecordCore) -> None:
        core.refs -= 1
        if core.refs > 0 or self._cores.get(core.name) is not core:
            return
        del self._cores[core.name]
        core.mark_gone("DISCARDED")
        if self.conn.is_open:
            await self.conn.request_bulk(Topic.RECORD, RecordAction.UNSUBSCRIBE, [core.name])

    async def delete(self, core: RecordCore) -> None:
        await self.conn.request(
            Message(Topic.RECORD, RecordAction.DELETE, name=core.name), ("delete", core.name)
        )
        self.forget(core, "DELETED")

    def forget(self, core: RecordCore, reason: str) -> None:
        if self._cores.get(core.name) is core:
            del self._cores[core.name]
        core.mark_gone(reason)

    def resync(self, core: RecordCore) -> None:
        """Read ``core`` again and adopt whatever the server holds."""
        if core.resyncing:
            return
        core.resyncing = True
        try:
            self.conn.send(Message(Topic.RECORD, RecordAction.READ, name=core.name))
        except NotConnected:
            core.resyncing = False  # the reconnect replays it

    # -- writes --------------------------------------------------------------------------

    async def send_write(self, msg: Message, *, ack: bool) -> None:
        if not ack:
            self.conn.send(msg)
            return
        if msg.correlation_id is None:
            msg.correlation_id = self.conn.next_id()
        msg.is_write_ack = True
        await self.conn.request(msg, ("write", msg.correlation_id))

    def fail_write(self, cid: str | None, error: ClientError) -> None:
        if cid is None or not self.conn.pending.reject(("write", cid), error):
            self.conn.report(error)

    async def set_data(self, name: str, *args: Any, ack: bool = True) -> None:
        """Write without subscribing: ``set_data(name, data)`` or ``set_data(name, path, value)``.

        Creates the record if needed (CREATEANDUPDATE / CREATEANDPATCH at version -1, which the
        server applies on top of whatever it holds). A live record is written through instead.
        """
        if len(args) == 1:
            path, value = None, args[0]
            if not isinstance(value, dict | list):
                raise TypeError("record data must be a dict or a list, or give a path")
        elif len(args) == 2 and isinstance(args[0], str) and args[0]:
            path, value = args
        else:
            raise TypeError("use set_data(name, data) or set_data(name, path, value)")
        core = self._cores.get(name)
        if core is not None and core.loaded:
            await core.write(path, value, ack=ack)
            return
        action = RecordAction.CREATEANDUPDATE if path is None else RecordAction.CREATEANDPATCH
        msg = Message(Topic.RECORD, action, name=name, version=-1, path=path, data=dumps(value))
        await self.send_write(msg, ack=ack)

    # -- one-off reads -------------------------------------------------------------------

    async def snapshot(self, name: str) -> Any:
        """The record's data; ``RecordError('RECORD_NOT_FOUND')`` if it does not exist."""
        core = self._cores.get(name)
        if core is not None and core.loaded:
            return Record(core).get()
        _, data = await self.conn.request(
            Message(Topic.RECORD, RecordAction.READ, name=name), ("read", name)
        )
        return data

    async def head(self, name: str) -> int:
        """The record's version, -1 if it does not exist."""
        core = self._cores.get(name)
        if core is not None and core.loaded:
            return core.version
        version: int = await self.conn.request(
            Message(Topic.RECORD, RecordAction.HEAD, name=name), ("head", name)
        )
        return version

    async def has(self, name: str) -> bool:
        return await self.head(name) != -1

    async def notify(self, names: list[str]) -> None:
        """Tell the server these records changed in storage behind its back."""
        cid = self.conn.next_id()
        await self.conn.request(
            Message(Topic.RECORD, RecordAction.NOTIFY, names=list(names), correlation_id=cid),
            ack_key(Topic.RECORD, RecordAction.NOTIFY, cid),
            ("notify", cid),
        )

    # -- messages from the server --------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        action, name = msg.action, msg.name or ""
        core = self._cores.get(name)
        pending = self.conn.pending
        if action in _WRITES:
            if core is not None:
                core.on_remote_write(msg)
        elif action == RecordAction.READ_RESPONSE:
            data = json.loads(msg.data) if msg.data is not None else {}
            version = msg.version if msg.version is not None else -1
            if core is not None:
                core.on_read(version, data)
            pending.resolve(("read", name), (version, data))
        elif action == RecordAction.HEAD_RESPONSE:
            self._on_head(name, msg.version if msg.version is not None else -1)
        elif action == RecordAction.HEAD_RESPONSE_BULK:
            for each, version in (msg.versions or {}).items():
                self._on_head(each, version)
        elif action == RecordAction.WRITE_ACKNOWLEDGEMENT:
            pending.resolve(("write", msg.correlation_id))
        elif action == RecordAction.VERSION_EXISTS:
            if core is not None:
                core.on_version_exists(msg)
            else:
                self.fail_write(
                    msg.correlation_id if msg.is_write_ack else None,
                    RecordError("VERSION_EXISTS", name),
                )
        elif action == RecordAction.DELETE_SUCCESS:
            pending.resolve(("delete", name))
        elif action == RecordAction.DELETED:
            if core is not None:
                self.forget(core, "DELETED")
        elif action in (
            RecordAction.SUBSCRIPTION_HAS_PROVIDER,
            RecordAction.SUBSCRIPTION_HAS_NO_PROVIDER,
        ):
            if core is not None:
                core.has_provider = action == RecordAction.SUBSCRIPTION_HAS_PROVIDER
        elif self._listener.handle(msg) or action in _BENIGN:
            pass
        else:
            self._on_error(msg, core)

    def _on_head(self, name: str, version: int) -> None:
        core = self._cores.get(name)
        if core is not None and core.resubscribing:
            core.on_head(version)
        self.conn.pending.resolve(("head", name), version)

    def _on_error(self, msg: Message, core: RecordCore | None) -> None:
        action, name = msg.action, msg.name or ""
        detail = msg.data if msg.data and action != RecordAction.VERSION_EXISTS else None
        error = RecordError(RecordAction(action).name, name, detail)
        if core is not None:
            if action == RecordAction.INVALID_VERSION:
                self.resync(core)  # our version ran ahead of the server's: take its state
            elif action == RecordAction.RECORD_NOT_FOUND and core.loaded:
                self.forget(core, "DELETED")  # a resync found it gone
        key = _request_of(msg)
        if key is None or not self.conn.pending.reject(key, error):
            self.conn.report(error)

    def _on_reestablished(self) -> None:
        live = [core for core in self._cores.values() if core.loaded]
        if not live:
            return
        for core in live:
            core.resubscribing = True
            core.resyncing = False
        names = [core.name for core in live]
        self.conn.send(self.conn.bulk(Topic.RECORD, RecordAction.SUBSCRIBEANDHEAD, names))


def _request_of(error: Message) -> tuple[str, str | None] | None:
    """The pending request an error answers, by the action it names."""
    original, name = error.original_action, error.name or ""
    if error.is_write_ack and error.correlation_id is not None:
        return ("write", error.correlation_id)
    if original in _READS:
        return ("read", name)
    if original in _HEADS:
        return ("head", name)
    if original == RecordAction.DELETE:
        return ("delete", name)
    if original == RecordAction.NOTIFY or error.action == RecordAction.RECORD_NOTIFY_ERROR:
        return ("notify", error.correlation_id)
    return None
