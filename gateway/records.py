"""Records: versioned JSON documents, read, written and synchronised to every subscriber.

Invariants:

* Per record, operations run one at a time in arrival order. A record in the cache is served
  and written synchronously inside ``handle`` (the hot path). Anything that must wait (a cache
  miss, a delete, a NOTIFY re-read) opens a *lane* for the name: later operations on that name
  queue behind it until the lane drains, so no write can overtake another or land on a stale
  snapshot. A connection awaits only its own queued operation, which keeps per-client order.
* A write with version ``v`` applies iff ``v == current + 1``, or ``v == -1`` (forced: ``v :=
  current + 1``). Applied writes make a new immutable ``Record`` (patches copy only the
  containers along the path) and are broadcast once-encoded to every subscriber but the writer.
* Write acknowledgements wait for durability in a task of their own, never in the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .connection import Connection
from .exceptions import BackPressure, InvalidData, StorageError
from .listen import ListenRegistry
from .paths import Token, erase_path, parse_path, set_path
from .protocol import Message, RecordAction, Topic, encode
from .store import Record, RecordStore
from .subscriptions import SubscriptionRegistry

__all__ = ["MAX_NAME_BYTES", "RecordHandler"]

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 2048
"""Longer names get INVALID_MESSAGE_DATA: they stay well inside every backend's key limits
(a PostgreSQL b-tree entry tops out near 2.7 kB), and 500-byte names keep working."""

R = RecordAction
_LISTEN_ACTIONS = frozenset({R.LISTEN, R.UNLISTEN, R.LISTEN_ACCEPT, R.LISTEN_REJECT})
_WRITES = frozenset(
    {R.UPDATE, R.PATCH, R.ERASE, R.PATCH_MULTI, R.CREATEANDUPDATE, R.CREATEANDPATCH}
)
_MISSING_DATA = "{}"

Op = Callable[[Record | None], Record | Awaitable[Record | None] | None]
"""An operation on one record: gets the current snapshot, returns the snapshot after it."""
Change = Callable[[Any], Any]
"""A validated write: current data -> new data (raises ``InvalidData`` if it cannot apply)."""


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str | None) -> Any:
    """Strict JSON (no NaN/Infinity, which no JavaScript peer could parse back)."""
    if text is None:
        raise InvalidData("data is missing")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidData(f"data is not valid JSON: {exc}") from exc


def _valid_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and name != ""
        and (len(name) * 4 <= MAX_NAME_BYTES or len(name.encode()) <= MAX_NAME_BYTES)
    )


def _version(record: Record | None) -> int:
    return -1 if record is None else record.version


class _Lane:
    """Operations on one name waiting behind asynchronous work, in arrival order."""

    __slots__ = ("queue", "task")

    def __init__(self) -> None:
        self.queue: deque[tuple[Op, Callable[[Exception], None], asyncio.Future[None]]] = deque()
        self.task: asyncio.Task[None] | None = None


class RecordHandler:
    """Every RECORD action; subscriptions and listening live here, snapshots in ``store``."""

    def __init__(self, store: RecordStore, *, listen_timeout: float = 0.5) -> None:
        self.store = store
        self.subscriptions = SubscriptionRegistry()
        self.listen = ListenRegistry(Topic.RECORD, self.subscriptions, timeout=listen_timeout)
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        """Strong references to write-ack tasks while they wait for durability."""
        store.on_external_change = self._on_external_change

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        action = msg.action
        if action in _WRITES:
            return self._write(conn, msg)
        if action == R.SUBSCRIBECREATEANDREAD or action == R.SUBSCRIBEANDREAD:
            return self._subscribe_and_read(conn, msg, create=action == R.SUBSCRIBECREATEANDREAD)
        if action == R.SUBSCRIBE or action == R.UNSUBSCRIBE:
            self._bulk(conn, msg)
            return None
        if action == R.READ or action == R.HEAD:
            return self._read(conn, msg)
        if action == R.SUBSCRIBEANDHEAD or action == R.HEAD_BULK:
            return self._heads(conn, msg)
        if action == R.DELETE:
            return self._delete(conn, msg)
        if action == R.NOTIFY:
            return self._notify(conn, msg)
        if action in _LISTEN_ACTIONS:
            self.listen.handle(conn, msg)
            return None
        conn.send(
            Message(Topic.RECORD, R.ERROR, name=msg.name, original_action=action, is_error=True)
        )
        return None

    def on_disconnect(self, conn: Connection) -> None:
        self.subscriptions.remove_connection(conn)
        self.listen.on_disconnect(conn)

    # -- serialisation per record ----------------------------------------------------------

    def _run(
        self, name: str, op: Op, on_error: Callable[[Exception], None], *, sync: bool = True
    ) -> Awaitable[None] | None:
        """Run ``op`` on ``name``'s current snapshot after every operation that came before.

        A ``sync`` op on a cached record with no lane runs right here and returns None;
        otherwise it queues, and the returned future resolves once it ran.
        """
        lane = self._lanes.get(name)
        if lane is None:
            record = self.store.cached(name) if sync else None
            if record is not None:
                op(record)
                return None
            lane = self._lanes[name] = _Lane()
            lane.task = asyncio.create_task(self._drain(name, lane))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.queue.append((op, on_error, done))
        return done

    async def _drain(self, name: str, lane: _Lane) -> None:
        try:
            record = self.store.cached(name)
            if record is None:
                try:
                    record = await self.store.load(name)
                except Exception as exc:
                    log.warning("loading record %r failed: %s", name, exc)
                    while lane.queue:
                        _, on_error, done = lane.queue.popleft()
                        on_error(exc)
                        _release(done)
                    return
            while lane.queue:
                op, on_error, done = lane.queue.popleft()
                try:
                    result = op(record)
                    record = await result if isinstance(result, Awaitable) else result
                except StorageError as exc:
                    log.warning("record operation on %r failed: %s", name, exc)
                    on_error(exc)
                except Exception as exc:
                    log.exception("record operation on %r failed", name)
                    on_error(exc)
                finally:
                    _release(done)
        finally:
            del self._lanes[name]
            for _, _, done in lane.queue:  # only if cancelled: release whoever waits
                _release(done)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gather(self, pending: list[Awaitable[None]]) -> Awaitable[None] | None:
        if not pending:
            return None
        return pending[0] if len(pending) == 1 else self._then(pending)

    # -- replies ---------------------------------------------------------------------------

    @staticmethod
    def _error(conn: Connection, msg: Message, action: int, name: str | None = None) -> None:
        """An error about ``msg``, carrying what the client needs to route it."""
        conn.send(
            Message(
                Topic.RECORD,
                action,
                name=name if name is not None else msg.name,
                original_action=msg.action,
                correlation_id=msg.correlation_id,
                is_write_ack=msg.is_write_ack or None,
                is_error=True,
            )
        )

    def _load_error(self, conn: Connection, msg: Message, name: str) -> Callable[[Exception], None]:
        def reply(exc: Exception) -> None:
            action = R.RECORD_LOAD_ERROR if isinstance(exc, StorageError) else R.ERROR
            self._error(conn, msg, action, name)

        return reply

    def _invalid(self, conn: Connection, msg: Message, reason: object) -> None:
        log.debug("invalid %r: %s", msg, reason)
        conn.send(
            Message(
                Topic.RECORD,
                R.INVALID_MESSAGE_DATA,
                name=msg.name,
                original_action=msg.action,
                version=msg.version,
                path=msg.path,
                correlation_id=msg.correlation_id,
                is_write_ack=msg.is_write_ack,
                is_error=True,
            )
        )

    def _names(self, conn: Connection, msg: Message) -> list[str] | None:
        """The bulk names of ``msg``, or None after answering INVALID_MESSAGE_DATA."""
        names = msg.names or ([msg.name] if msg.name is not None else [])
        if not names or not all(_valid_name(name) for name in names):
            self._invalid(conn, msg, "missing, empty or overlong record name")
            return None
        return names

    @staticmethod
    def _read_response(conn: Connection, name: str, record: Record | None) -> None:
        if record is None:
            conn.send(
                Message(Topic.RECORD, R.READ_RESPONSE, name=name, version=-1, data=_MISSING_DATA)
            )
        else:
            conn.send(
                Message(
                    Topic.RECORD,
                    R.READ_RESPONSE,
                    name=name,
                    version=record.version,
                    data=_dumps(record.data),
                )
            )

    # -- reads and subscriptions -----------------------------------------------------------

    def _subscribe_and_read(
        self, conn: Connection, msg: Message, *, create: bool
    ) -> Awaitable[None] | None:
        names = self._names(conn, msg)
        if names is None:
            return None
        conn.send(msg.ack())  # first, as the reference does; each READ_RESPONSE follows

        def op_for(name: str) -> Op:
            def op(record: Record | None) -> Record | None:
                if record is None and create:
                    record = Record(name, 0, {})
                    try:
                        self.store.put(record)
                    except BackPressure:
                        conn.send(
                            Message(
                                Topic.RECORD,
                                R.RECORD_CREATE_ERROR,
                                name=name,
                                original_action=msg.action,
                                is_error=True,
                            )
                        )
                        return None
                self.subscriptions.subscribe(name, conn)  # a duplicate is silent in bulk
                self._read_response(conn, name, record)
                return record

            return op

        pending = [
            p
            for name in names
            if (p := self._run(name, op_for(name), self._load_error(conn, msg, name))) is not None
        ]
        return self._gather(pending)

    def _read(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        name = msg.name
        if not _valid_name(name):
            self._invalid(conn, msg, "missing, empty or overlong record name")
            return None
        assert name is not None
        head = msg.action == R.HEAD

        def op(record: Record | None) -> Record | None:
            if head:
                conn.send(
                    Message(Topic.RECORD, R.HEAD_RESPONSE, name=name, version=_version(record))
                )
            elif record is None:
                conn.send(
                    Message(
                        Topic.RECORD,
                        R.RECORD_NOT_FOUND,
                        name=name,
                        original_action=msg.action,
                        is_error=True,
                    )
                )
            else:
                self._read_response(conn, name, record)
            return record

        return self._run(name, op, self._load_error(conn, msg, name))

    def _heads(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        """HEAD_BULK and SUBSCRIBEANDHEAD: one HEAD_RESPONSE_BULK (-1 for missing names)."""
        names = self._names(conn, msg)
        if names is None:
            return None
        versions: dict[str, int] = {}

        def op_for(name: str) -> Op:
            def op(record: Record | None) -> Record | None:
                versions[name] = _version(record)
                return record

            return op

        pending = [
            p
            for name in names
            if (p := self._run(name, op_for(name), self._load_error(conn, msg, name))) is not None
        ]

        def finish() -> None:
            conn.send(Message(Topic.RECORD, R.HEAD_RESPONSE_BULK, versions=versions))
            if msg.action == R.SUBSCRIBEANDHEAD:
                self._bulk(conn, msg)

        if not pending:
            finish()
            return None
        return self._then(pending, finish)

    @staticmethod
    async def _then(
        pending: list[Awaitable[None]], finish: Callable[[], None] | None = None
    ) -> None:
        for waiter in pending:
            await waiter
        if finish is not None:
            finish()

    def _bulk(self, conn: Connection, msg: Message) -> None:
        """SUBSCRIBE / UNSUBSCRIBE (and the subscribe half of SUBSCRIBEANDHEAD), then the ack."""
        names = self._names(conn, msg)
        if names is None:
            return
        if msg.action == R.UNSUBSCRIBE:
            for name in names:
                # As the reference does: a bulk unsubscribe of a name not held is silent.
                self.subscriptions.unsubscribe(name, conn)
        else:
            for name in names:
                if not self.subscriptions.subscribe(name, conn):
                    conn.send(
                        Message(
                            Topic.RECORD,
                            R.MULTIPLE_SUBSCRIPTIONS,
                            name=name,
                            original_action=msg.action,
                        )
                    )
        conn.send(Message(Topic.RECORD, msg.action, correlation_id=msg.correlation_id, is_ack=True))

    # -- writes ----------------------------------------------------------------------------

    def _write(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        name = msg.name
        if not _valid_name(name):
            self._invalid(conn, msg, "missing, empty or overlong record name")
            return None
        assert name is not None
        try:
            change = self._parse_change(msg)
        except InvalidData as exc:
            self._invalid(conn, msg, exc)
            return None
        upsert = msg.action == R.CREATEANDUPDATE or msg.action == R.CREATEANDPATCH

        def op(record: Record | None) -> Record | None:
            return self._apply(conn, msg, name, change, record, upsert=upsert)

        def on_error(exc: Exception) -> None:
            self._error(conn, msg, R.RECORD_UPDATE_ERROR, name)

        return self._run(name, op, on_error)

    @staticmethod
    def _parse_change(msg: Message) -> Change:
        """Validate ``msg`` up front (JSON, paths) and return how it changes the data."""
        action = msg.action
        if action == R.ERASE:
            tokens = parse_path(msg.path)
            return lambda data: erase_path(data, tokens)
        if action == R.PATCH or action == R.CREATEANDPATCH:
            tokens = parse_path(msg.path)
            value = _loads(msg.data)
            return lambda data: set_path(data, tokens, value)
        if msg.path is not None:  # the reference would patch; no client sends this
            raise InvalidData("a whole-record write carries no path")
        if action == R.PATCH_MULTI:
            return _patch_multi(_loads(msg.data))
        value = _loads(msg.data)
        if not isinstance(value, dict | list):
            raise InvalidData("record data must be a JSON object or array")
        return lambda data: value

    def _apply(
        self,
        conn: Connection,
        msg: Message,
        name: str,
        change: Change,
        record: Record | None,
        *,
        upsert: bool,
    ) -> Record | None:
        if record is None:
            if not upsert:
                self._error(conn, msg, R.RECORD_UPDATE_ERROR, name)
                return None
            base = Record(name, 0, {})  # what CREATE would make; stored only with this write
        else:
            base = record
        current = base.version
        version = msg.version if msg.version is not None else 0  # proto3: absent is 0
        if version == -1:
            version = current + 1
        elif version > current + 1:
            conn.send(
                Message(
                    Topic.RECORD,
                    R.INVALID_VERSION,
                    name=name,
                    version=current,
                    data=msg.data,
                    path=msg.path,
                    original_action=_as_sent(msg),
                    correlation_id=msg.correlation_id,
                    is_write_ack=msg.is_write_ack,
                    is_error=True,
                )
            )
            return record
        elif version != current + 1:
            conn.send(
                Message(
                    Topic.RECORD,
                    R.VERSION_EXISTS,
                    name=name,
                    version=current,
                    data=_dumps(base.data),
                    original_action=_as_sent(msg),
                    correlation_id=msg.correlation_id,
                    is_write_ack=msg.is_write_ack,
                )
            )
            return record
        try:
            new = Record(name, version, change(base.data))
        except InvalidData as exc:
            self._invalid(conn, msg, exc)
            return record
        try:
            self.store.put(new)
        except BackPressure:
            log.warning("write-behind queue full; refusing a write to %r", name)
            self._error(conn, msg, R.RECORD_UPDATE_ERROR, name)
            return record
        if self.subscriptions.has_subscribers(name):
            self.subscriptions.send(name, encode(self._broadcast(msg, new)), exclude=conn)
        if msg.is_write_ack and msg.correlation_id is not None:
            self._spawn(self._acknowledge(conn, name, version, msg.correlation_id))
        return new

    @staticmethod
    def _broadcast(msg: Message, new: Record) -> Message:
        """What subscribers get: the incoming JSON text as is, never re-serialised per peer."""
        action = msg.action
        if action == R.PATCH_MULTI:  # no JS client knows PATCH_MULTI: send the whole result
            return Message(
                Topic.RECORD, R.UPDATE, name=new.name, version=new.version, data=_dumps(new.data)
            )
        if msg.path is None:
            return Message(
                Topic.RECORD, R.UPDATE, name=new.name, version=new.version, data=msg.data
            )
        # PATCH, CREATEANDPATCH and ERASE all go out as PATCH; an erase has no data.
        data = None if action == R.ERASE else msg.data
        return Message(
            Topic.RECORD, R.PATCH, name=new.name, version=new.version, path=msg.path, data=data
        )

    async def _acknowledge(
        self, conn: Connection, name: str, version: int, correlation_id: str
    ) -> None:
        try:
            await self.store.durable(name, version)
        except StorageError as exc:
            log.warning("write %r v%d did not become durable: %s", name, version, exc)
            conn.send(
                Message(
                    Topic.RECORD,
                    R.RECORD_UPDATE_ERROR,
                    name=name,
                    correlation_id=correlation_id,
                    is_write_ack=True,
                    is_error=True,
                )
            )
            return
        conn.send(
            Message(
                Topic.RECORD,
                R.WRITE_ACKNOWLEDGEMENT,
                name=name,
                correlation_id=correlation_id,
                is_write_ack=True,
            )
        )

    # -- delete, notify, external changes ------------------------------------------------------

    def _delete(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        name = msg.name
        if not _valid_name(name):
            self._invalid(conn, msg, "missing, empty or overlong record name")
            return None
        assert name is not None

        async def op(record: Record | None) -> Record | None:
            try:
                await self.store.delete(name)
            except StorageError as exc:
                log.warning("deleting record %r failed: %s", name, exc)
                conn.send(Message(Topic.RECORD, R.RECORD_DELETE_ERROR, name=name, is_error=True))
                return record
            conn.send(Message(Topic.RECORD, R.DELETE_SUCCESS, name=name))
            self._deleted(name, exclude=conn)
            return None

        return self._run(name, op, self._load_error(conn, msg, name), sync=False)

    def _deleted(self, name: str, exclude: Connection | None = None) -> None:
        """Tell subscribers (but ``exclude``) that ``name`` is gone, then drop them all."""
        self.subscriptions.send(
            name, encode(Message(Topic.RECORD, R.DELETED, name=name)), exclude=exclude
        )
        for subscriber in list(self.subscriptions.subscribers(name)):
            self.subscriptions.unsubscribe(name, subscriber)  # one by one: listen hooks run

    def _pushed(self, name: str, record: Record | None) -> None:
        """Storage changed ``name`` behind the clients' backs: tell every subscriber."""
        if record is None:
            self._deleted(name)
        elif self.subscriptions.has_subscribers(name):
            frame = encode(
                Message(
                    Topic.RECORD,
                    R.UPDATE,
                    name=name,
                    version=record.version,
                    data=_dumps(record.data),
                )
            )
            self.subscriptions.send(name, frame)

    def _notify(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        names = self._names(conn, msg)
        if names is None:
            return None

        def op_for(name: str) -> Op:
            async def op(record: Record | None) -> Record | None:
                self.store.forget(name)
                fresh = await self.store.load(name)
                if self.subscriptions.has_subscribers(name):
                    self._pushed(name, fresh)
                return fresh

            return op

        failures: list[Exception] = []

        def finish() -> None:
            if failures:  # one answer per NOTIFY: the client resolves its callback once
                conn.send(
                    Message(
                        Topic.RECORD,
                        R.RECORD_NOTIFY_ERROR,
                        names=names,
                        correlation_id=msg.correlation_id,
                        data=_dumps(f"re-reading from storage failed: {failures[0]}"),
                        is_error=True,
                    )
                )
            else:
                conn.send(msg.ack())

        pending = [self._run(name, op_for(name), failures.append, sync=False) for name in names]
        return self._then([p for p in pending if p is not None], finish)

    def _on_external_change(self, name: str, record: Record | None) -> None:
        """Store callback: a conflict was resolved in storage's favour (or the record is gone)."""

        def op(_: Record | None) -> Record | None:
            self._pushed(name, record)
            return record

        lane = self._lanes.get(name)
        if lane is None:
            op(None)
        else:  # keep arrival order, and make queued writes see the new snapshot
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lane.queue.append((op, lambda exc: None, done))


def _release(done: asyncio.Future[None]) -> None:
    if not done.done():  # its waiter may have been cancelled (the connection went away)
        done.set_result(None)


def _as_sent(msg: Message) -> int:
    """``originalAction`` as the reference reports it: writes are PATCH or UPDATE by path."""
    if msg.action == R.PATCH_MULTI:
        return R.PATCH_MULTI
    return R.PATCH if msg.path is not None else R.UPDATE


def _patch_multi(value: Any) -> Change:
    """PATCH_MULTI data: ``[{"path": str, "data": json}, ...]``, all applied as one write."""
    if not isinstance(value, list) or not value:
        raise InvalidData("PATCH_MULTI data must be a non-empty list of {path, data}")
    steps: list[tuple[tuple[Token, ...], Any, bool]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise InvalidData("PATCH_MULTI entries must be objects with a string path")
        if set(item) - {"path", "data"}:
            raise InvalidData("PATCH_MULTI entries hold only path and data")
        steps.append((parse_path(item["path"]), item.get("data"), "data" not in item))

    def change(data: Any) -> Any:
        for tokens, new, erase in steps:
            data = erase_path(data, tokens) if erase else set_path(data, tokens, new)
        return data

    return change
