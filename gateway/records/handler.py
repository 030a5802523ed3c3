"""The RECORD topic: reads, subscriptions, writes, delete and notify, synchronised to every
subscriber.

Invariants:

* Per record, operations run one at a time in arrival order (``lanes``); a record in the cache
  is served and written synchronously inside ``handle`` (the hot path).
* Applied writes (``writes``) are broadcast once-encoded to every subscriber but the writer.
* Write acknowledgements wait for durability in a task of their own, never in the connection.
* Every read is answered: a record whose data cannot be sent as JSON (only storage written
  behind our back holds such data; ``payload`` refuses it at the edge) gets RECORD_LOAD_ERROR,
  logged once per record, never non-JSON, a hang or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from ..config import LimitsConfig
from ..connection import Connection
from ..exceptions import (
    BackPressure,
    CommitConflict,
    InvalidData,
    InvalidJSON,
    LimitExceeded,
    RecordsUnavailable,
    StorageError,
    UnencodableData,
)
from ..handler import unknown_action
from ..limits import LimitTrips, ThrottledLog
from ..listen import ListenRegistry
from ..permissions import UNDEFINED, Verdict
from ..protocol import Message, RecordAction, Topic, encode, payload
from ..store import Record, RecordStore
from ..subscriptions import SubscriptionRegistry
from . import writes
from .lanes import Lanes, OnError, Op
from .messages import dumps, error, routed_error, snapshot

if TYPE_CHECKING:
    from ..permissions.gate import Gate

__all__ = ["MAX_NAME_BYTES", "Authority", "RecordHandler"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

MAX_UNREADABLE_LOGGED = 10_000
"""Names remembered so an unreadable record is logged once, not once per read."""
MAX_NAME_BYTES = 2048
"""Default ``limits.max_name_length``: longer names get INVALID_MESSAGE_DATA. It stays well
inside every backend's key limits (a PostgreSQL b-tree entry tops out near 2.7 kB), and
500-byte names keep working."""

R = RecordAction
_LISTEN_ACTIONS = frozenset({R.LISTEN, R.UNLISTEN, R.LISTEN_ACCEPT, R.LISTEN_REJECT})


def _valid_name(name: object, max_bytes: int = MAX_NAME_BYTES) -> TypeGuard[str]:
    return (
        isinstance(name, str)
        and name != ""
        and (len(name) * 4 <= max_bytes or len(name.encode()) <= max_bytes)
    )


def _unstorable(reason: object) -> bool:
    return isinstance(reason, InvalidJSON) and reason.reason == "unstorable"


def _version(record: Record | None) -> int:
    return -1 if record is None else record.version


def _size(record: Record | None) -> int:
    return 2 if record is None else record.size


def _READ_CHECK(record: Record | None) -> list[tuple[str, Any]]:
    return [("read", UNDEFINED)]


def _DELETE_CHECK(record: Record | None) -> list[tuple[str, Any]]:
    return [("delete", UNDEFINED)]


class Authority(Protocol):
    """Where a cluster node's changes are decided (``gateway.cluster.records``): set as
    ``RecordHandler.authority``, every change is a compare-and-set there, and subscribers are
    served from ``cluster_change`` in the order the cluster decided."""

    async def commit(
        self, name: str, new: Record | None, base: Record | None, *, local: Any, ack: bool
    ) -> Awaitable[None] | None:
        """Make ``new`` (None: delete) current if ``base`` still is; raises
        ``CommitConflict`` with the current record if not, ``RecordsUnavailable`` without
        Redis. With ``ack``, what resolves once storage holds the change."""

    def current(self, name: str, default: Record | None) -> Record | None:
        """The newest state of ``name`` this node served (``default`` if it holds none): what
        the next operation on the record runs on."""

    async def settled(self, name: str) -> None:
        """Returns once storage holds the state of ``name`` current when called (a deletion
        committed but not yet written included); raises ``StorageError`` if it never will."""


class RecordHandler:
    """Every RECORD action; subscriptions and listening live here, snapshots in ``store``."""

    def __init__(
        self,
        store: RecordStore,
        *,
        listen_timeout: float = 0.5,
        limits: LimitsConfig | None = None,
        max_record_size: int = 1 << 20,
        max_json_depth: int = payload.DEFAULT_MAX_DEPTH,
        trips: LimitTrips | None = None,
        refuse_nul: bool = False,
    ) -> None:
        limits = limits or LimitsConfig()
        self.store = store
        self.max_json_depth = max_json_depth
        self.trips = trips if trips is not None else LimitTrips()
        self.subscriptions = SubscriptionRegistry(duplicate_action=R.MULTIPLE_SUBSCRIPTIONS)
        self.listen = ListenRegistry(
            Topic.RECORD,
            self.subscriptions,
            timeout=listen_timeout,
            limits=limits,
            trips=self.trips,
        )
        self._lanes = Lanes(store, per_message=limits.max_loads_per_connection)
        self._max_name = limits.max_name_length
        self.refuse_nul = refuse_nul
        """Storage cannot hold U+0000: names holding it are refused before any lane, load,
        cache entry or flush (reads and subscriptions too, not only writes)."""
        self._max_size = max_record_size
        self._write_limits = writes.WriteLimits(
            max_size=max_record_size,
            max_path_depth=limits.max_path_depth,
            max_array_index=limits.max_array_index,
            max_patch_entries=limits.max_patch_entries,
            max_json_depth=max_json_depth,
            refuse_nul=refuse_nul,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        """Strong references to write-ack tasks while they wait for durability."""
        self._unreadable_logged: set[str] = set()
        self.gate: Gate | None = None
        """Permission checks, set by the server; None: everything is allowed."""
        self.authority: Authority | None = None
        """Set on a cluster node: changes are committed there (``Authority``)."""
        self.commit_retries = 16
        """Runs of a change that keeps losing its compare-and-set
        (``cluster.max_commit_retries``)."""
        store.on_external_change = self._on_external_change

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        action = msg.action
        if action in writes.WRITES:
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
        conn.send(unknown_action(msg, R.ERROR))
        return None

    def on_disconnect(self, conn: Connection) -> None:
        self.subscriptions.remove_connection(conn)
        self.listen.on_disconnect(conn)

    # -- validation and errors -------------------------------------------------------------

    def _name(self, conn: Connection, msg: Message) -> str | None:
        """The name of ``msg``, or None after answering INVALID_MESSAGE_DATA."""
        name = msg.name
        if _valid_name(name, self._max_name):
            if self.refuse_nul and "\x00" in name:
                self._unstorable_name(conn, msg, name)
                return None
            return name
        self._bad_name(conn, msg)
        return None

    def _names(self, conn: Connection, msg: Message) -> list[str] | None:
        """The bulk names of ``msg``, or None after answering INVALID_MESSAGE_DATA.

        A name storage cannot hold is answered on its own (so a client routes the error to
        that name) and the others are served; None if no name is left."""
        names = msg.names or ([msg.name] if msg.name is not None else [])
        max_bytes = self._max_name
        if not names or not all(_valid_name(name, max_bytes) for name in names):
            self._bad_name(conn, msg)
            return None
        if self.refuse_nul and any("\x00" in name for name in names):
            for name in names:
                if "\x00" in name:
                    self._unstorable_name(conn, msg, name)
            names = [name for name in names if "\x00" not in name]
            return names or None
        return names

    def _unstorable_name(self, conn: Connection, msg: Message, name: str) -> None:
        reason = payload.refuse(
            "unstorable", "record name holds U+0000, which the storage cannot hold"
        )
        self._invalid(conn, dataclasses.replace(msg, name=name), reason)

    def _bad_name(self, conn: Connection, msg: Message) -> None:
        if any(isinstance(name, str) and name for name in (msg.name, *msg.names)):
            self.trips.trip("limits.max_name_length")  # present and not empty: too long
        self._invalid(conn, msg, "missing, empty or overlong record name")

    def _invalid(self, conn: Connection, msg: Message, reason: object) -> None:
        log.debug("invalid %r: %s", msg, reason)
        if isinstance(reason, LimitExceeded):
            self.trips.trip(reason.key)
        conn.send(
            Message(
                Topic.RECORD,
                R.INVALID_MESSAGE_DATA,
                name=msg.name,
                original_action=msg.action,
                version=msg.version,
                path=msg.path,
                # What storage cannot hold is no client bug: say why, as a JSON string.
                data=dumps(str(reason)) if _unstorable(reason) else None,
                correlation_id=msg.correlation_id,
                is_write_ack=msg.is_write_ack,
                is_error=True,
            )
        )

    @staticmethod
    def _load_error(conn: Connection, msg: Message, name: str) -> OnError:
        """Answers ``msg`` when ``name`` could not be loaded (or its operation failed)."""

        def reply(exc: Exception) -> None:
            # Whatever failed, the client routes this to the read that waits for it.
            conn.send(routed_error(msg, R.RECORD_LOAD_ERROR, name))

        return reply

    def _readable(
        self, conn: Connection, msg: Message, name: str, record: Record
    ) -> Message | None:
        """``record`` as READ_RESPONSE, or None after answering RECORD_LOAD_ERROR because its
        data cannot be sent as JSON."""
        try:
            return snapshot(R.READ_RESPONSE, name, record)
        except UnencodableData as exc:
            self._unreadable(name, exc)
            conn.send(routed_error(msg, R.RECORD_LOAD_ERROR, name))
            return None

    def _unreadable(self, name: str, exc: UnencodableData) -> None:
        if name in self._unreadable_logged:
            return
        if len(self._unreadable_logged) >= MAX_UNREADABLE_LOGGED:
            self._unreadable_logged.clear()
        self._unreadable_logged.add(name)
        log.warning(
            "record %r cannot be sent to clients (%s); reads get RECORD_LOAD_ERROR", name, exc
        )

    # -- permissions -------------------------------------------------------------------------

    def _pinned_gate(self) -> Gate | None:
        """The gate with the rules loaded now: a message is checked against the rules of its
        arrival even if a reload swaps them before its record's turn comes."""
        return None if self.gate is None else self.gate.pinned()

    def _checked(
        self,
        gate: Gate,
        conn: Connection,
        msg: Message,
        name: str,
        checks: Any,
        op: Op,
    ) -> Op:
        """``op``, run only if every rule ``checks(record)`` lists (``(rule_type, data)``
        pairs, in order) allows it on the record's current snapshot; otherwise the first
        refusal is answered and the record stays as it is. Synchronous unless a rule reads
        other records: then the returned op is a coroutine, so run it with ``sync=False``."""

        def gated(record: Record | None) -> Record | Awaitable[Record | None] | None:
            old = None if record is None else record.data
            pending = list(checks(record))
            while pending:
                rule_type, data = pending.pop(0)
                verdict = gate.decide(conn, "record", rule_type, name, data=data, old_data=old)
                if type(verdict) is not tuple:
                    return finish_later(record, verdict, rule_type, pending)
                if verdict[0] is not Verdict.ALLOWED:
                    gate.refuse(conn, msg, name, *verdict)
                    return record
            return op(record)

        async def finish_later(
            record: Record | None, first: Any, rule_type: str, rest: list[tuple[str, Any]]
        ) -> Record | None:
            old = None if record is None else record.data
            verdict = await first
            while True:
                if verdict[0] is not Verdict.ALLOWED:
                    gate.refuse(conn, msg, name, *verdict)
                    return record
                if not rest:
                    break
                rule_type, data = rest.pop(0)
                verdict = gate.decide(conn, "record", rule_type, name, data=data, old_data=old)
                if not isinstance(verdict, tuple):
                    verdict = await verdict
            result = op(record)
            return await result if isinstance(result, Awaitable) else result

        return gated

    # -- reads and subscriptions -----------------------------------------------------------

    def _subscribe_and_read(
        self, conn: Connection, msg: Message, *, create: bool
    ) -> Awaitable[None] | None:
        names = self._names(conn, msg)
        if names is None:
            return None
        names = list(dict.fromkeys(names))  # a name repeated is read (and answered) once
        conn.send(msg.ack())  # first, as the reference does; each READ_RESPONSE follows
        gate = self._pinned_gate()
        creating = create and self.authority is not None  # a cluster commits creates

        def op_for(name: str) -> Op:
            def op(record: Record | None) -> Record | Awaitable[Record | None] | None:
                if record is None and create and self.authority is not None:
                    return self._create(conn, msg, name, answer)
                return answer(record)

            def answer(record: Record | None) -> Record | None:
                if record is None and create:
                    record = Record(name, 0, {}, 2)
                    try:
                        self.store.put(record)
                    except BackPressure:
                        conn.send(error(R.RECORD_CREATE_ERROR, name, msg.action))
                        return None
                if record is None:
                    reply: Message | None = snapshot(R.READ_RESPONSE, name, None)
                else:
                    reply = self._readable(conn, msg, name, record)
                if reply is None:
                    return record
                self.subscriptions.subscribe(name, conn)  # a duplicate is silent in bulk
                conn.send(reply)
                return record

            if gate is None:
                # Only a create commits (and may lose a race); reads stay synchronous.
                return self._retrying(op, name) if creating else op

            def checks(record: Record | None) -> list[tuple[str, Any]]:
                # As the reference: a missing record asks ``create`` (or ``read`` if the
                # message cannot create), an existing one ``read``.
                return [("create" if record is None and create else "read", UNDEFINED)]

            checked = self._checked(gate, conn, msg, name, checks, op)
            return self._retrying(checked, name) if creating else checked

        sync = gate is None or not any(
            gate.needs_io("record", ("create", "read"), name) for name in names
        )
        sync = sync and not creating
        return self._lanes.each(names, op_for, partial(self._load_error, conn, msg), sync=sync)

    def _read(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        name = self._name(conn, msg)
        if name is None:
            return None
        head = msg.action == R.HEAD

        def op(record: Record | None) -> Record | None:
            if head:
                conn.send(
                    Message(Topic.RECORD, R.HEAD_RESPONSE, name=name, version=_version(record))
                )
            elif record is None:
                conn.send(error(R.RECORD_NOT_FOUND, name, msg.action))
            else:
                reply = self._readable(conn, msg, name, record)
                if reply is not None:
                    conn.send(reply)
            return record

        gate = self._pinned_gate()
        if gate is None:
            return self._lanes.run(name, op, self._load_error(conn, msg, name))
        gated = self._checked(gate, conn, msg, name, _READ_CHECK, op)
        sync = not gate.needs_io("record", ("read",), name)
        return self._lanes.run(name, gated, self._load_error(conn, msg, name), sync=sync)

    def _heads(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        """HEAD_BULK and SUBSCRIBEANDHEAD: one HEAD_RESPONSE_BULK (-1 for missing names)."""
        names = self._names(conn, msg)
        if names is None:
            return None
        names = list(dict.fromkeys(names))
        taken: dict[str, Record | None] = {}

        def op_for(name: str) -> Op:
            def op(record: Record | None) -> Record | None:
                taken[name] = record
                return record

            return op

        gate = self._pinned_gate()
        if gate is not None:
            plain_op_for = op_for

            def op_for(name: str) -> Op:
                return self._checked(gate, conn, msg, name, _READ_CHECK, plain_op_for(name))

        def finish() -> None:
            subscribe = msg.action == R.SUBSCRIBEANDHEAD
            # With the subscription, each version is the one served up to now, not the one
            # its op saw: a change served while other names' ops waited would otherwise reach
            # this client neither as an update nor in the answer (a head of v, then v+2).
            versions = {
                name: _version(self._served(name, record) if subscribe else record)
                for name, record in taken.items()
            }
            conn.send(Message(Topic.RECORD, R.HEAD_RESPONSE_BULK, versions=versions))
            if subscribe:
                allowed = [name for name in names if name in versions]  # refused: answered
                if allowed:
                    self._bulk(conn, dataclasses.replace(msg, names=allowed))

        sync = gate is None or not any(gate.needs_io("record", ("read",), n) for n in names)
        return self._lanes.each(
            names, op_for, partial(self._load_error, conn, msg), sync=sync, finish=finish
        )

    def _served(self, name: str, record: Record | None) -> Record | None:
        """The newest state of ``name`` served to its subscribers, ``record`` if unknown."""
        if self.authority is not None:
            return self.authority.current(name, record)
        cached = self.store.cached(name)
        return record if cached is None else cached

    def _bulk(self, conn: Connection, msg: Message) -> None:
        """SUBSCRIBE / UNSUBSCRIBE (and the subscribe half of SUBSCRIBEANDHEAD), then the ack."""
        names = self._names(conn, msg)
        if names is None:
            return
        self.subscriptions.bulk(conn, msg, names, subscribe=msg.action != R.UNSUBSCRIBE)

    # -- writes ----------------------------------------------------------------------------

    def _write(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        name = msg.name
        if not _valid_name(name, self._max_name):
            self._bad_name(conn, msg)
            return None
        try:
            change = writes.parse_change(msg, self._write_limits)
        except InvalidData as exc:
            self._invalid(conn, msg, exc)
            return None
        if self.gate is None and self.authority is None:
            record = self._lanes.free(name)
            if record is not None:  # the hot path: applied here, no closures made
                self._apply(conn, msg, name, change, record)
                return None
        return self._write_in_lane(conn, msg, name, change, self._pinned_gate())

    def _write_in_lane(
        self,
        conn: Connection,
        msg: Message,
        name: str,
        change: writes.Change,
        gate: Gate | None,
    ) -> Awaitable[None] | None:
        """``_write``'s change, run by the record's lane: behind the operations waiting on
        it, after loading the record, through the permission gate or the cluster."""

        def op(record: Record | None) -> Record | Awaitable[Record | None] | None:
            return self._apply(conn, msg, name, change, record)

        def on_error(exc: Exception) -> None:
            reply = routed_error(msg, R.RECORD_UPDATE_ERROR, name)
            if isinstance(exc, StorageError):  # a cluster change that failed: say why
                reply.data = dumps(str(exc))
            conn.send(reply)

        if gate is None:
            if self.authority is not None:
                return self._lanes.run(name, self._retrying(op, name), on_error, sync=False)
            return self._lanes.run(name, op, on_error)

        def checks(record: Record | None) -> list[tuple[str, Any]]:
            data: Any = UNDEFINED
            if gate.uses("record", "write", name, "data"):
                # ``data`` is the record as this write would leave it; a write that cannot
                # apply is refused as invalid when it does.
                with contextlib.suppress(InvalidData):
                    data = change({} if record is None else record.data, _size(record))[0]
            if record is None and msg.action in writes.UPSERTS:
                return [("create", UNDEFINED), ("write", data)]
            return [("write", data)]

        gated = self._checked(gate, conn, msg, name, checks, op)
        if self.authority is not None:
            return self._lanes.run(name, self._retrying(gated, name), on_error, sync=False)
        sync = not gate.needs_io("record", ("create", "write"), name)
        return self._lanes.run(name, gated, on_error, sync=sync)

    def _apply(
        self,
        conn: Connection,
        msg: Message,
        name: str,
        change: writes.Change,
        record: Record | None,
    ) -> Record | Awaitable[Record | None] | None:
        """Apply ``msg`` to ``record``: store the new snapshot, broadcast it, acknowledge it."""
        try:
            outcome = writes.apply(msg, name, change, record, max_size=self._max_size)
            fanout = None
            if self.authority is None and self.subscriptions.has_subscribers(name):
                fanout = writes.broadcast_frame(msg, outcome) if type(outcome) is Record else None
        except InvalidData as exc:
            self._invalid(conn, msg, exc)
            return record
        except UnencodableData as exc:  # the stored record holds what JSON cannot carry
            self._unreadable(name, exc)
            conn.send(routed_error(msg, R.RECORD_UPDATE_ERROR, name))
            return record
        if isinstance(outcome, Message):  # refused
            conn.send(outcome)
            return record
        if self.authority is not None:
            return self._commit_write(conn, msg, name, record, outcome)
        try:
            self.store.put(outcome)
        except BackPressure as exc:
            self.trips.trip(exc.key)
            _throttled.warning(
                "write-behind queue full (%s); refusing a write to %r", exc.key, name
            )
            conn.send(routed_error(msg, R.RECORD_UPDATE_ERROR, name))
            return record
        if fanout is not None:
            self.subscriptions.send(name, fanout, exclude=conn)
        if msg.is_write_ack and msg.correlation_id is not None:
            # Registered now, so the wait counts toward write_behind.max_pending at once.
            durable = self.store.watch(name, outcome.version)
            self._spawn(self._acknowledge(conn, name, outcome.version, durable, msg.correlation_id))
        return outcome

    # -- on a cluster node: changes committed by the authority ------------------------------

    def _retrying(self, op: Op, name: str) -> Op:
        """``op`` run again on the current record each time its change lost the cluster's
        compare-and-set, so the client gets what one node would answer on that record (a
        forced write applies on it, a versioned one meets VERSION_EXISTS); at most
        ``commit_retries`` runs, then the change fails (RECORD_UPDATE_ERROR)."""

        async def run(record: Record | None) -> Record | None:
            for attempt in range(self.commit_retries):
                try:
                    result = op(record)
                    return await result if isinstance(result, Awaitable) else result
                except CommitConflict as conflict:
                    record = conflict.current
                if attempt:
                    # Several nodes hammering one record: a random pause lets one of them
                    # through instead of all losing again at the next round trip.
                    await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                    assert self.authority is not None
                    record = self.authority.current(name, record)  # the bus's news meanwhile
            raise StorageError(
                f"the record changed on other nodes during {self.commit_retries} attempts "
                "(cluster.max_commit_retries)"
            )

        return run

    async def _commit_write(
        self, conn: Connection, msg: Message, name: str, base: Record | None, new: Record
    ) -> Record | None:
        """Commit write ``msg``'s ``new`` snapshot; subscribers hear of it from the cluster
        (``cluster_change``), the writer's acknowledgement once storage has it."""
        assert self.authority is not None
        ack = bool(msg.is_write_ack) and msg.correlation_id is not None
        try:
            durable = await self.authority.commit(name, new, base, local=(msg, conn), ack=ack)
        except (BackPressure, RecordsUnavailable) as exc:
            self._refuse_change(conn, msg, name, exc, R.RECORD_UPDATE_ERROR)
            return self.authority.current(name, base)
        if durable is not None and msg.correlation_id is not None:
            self._spawn(self._acknowledge(conn, name, new.version, durable, msg.correlation_id))
        return self.authority.current(name, new)

    async def _create(self, conn: Connection, msg: Message, name: str, answer: Op) -> Record | None:
        """SUBSCRIBECREATEANDREAD of a missing record on a cluster node: commit version 0,
        then answer as one node does."""
        assert self.authority is not None
        record = Record(name, 0, {}, 2)
        try:
            await self.authority.commit(name, record, None, local=None, ack=False)
        except (BackPressure, RecordsUnavailable) as exc:
            self._refuse_change(conn, msg, name, exc, R.RECORD_CREATE_ERROR)
            return self.authority.current(name, None)
        # What the cluster holds now: a change after the create was served here already.
        result = answer(self.authority.current(name, record))
        return await result if isinstance(result, Awaitable) else result

    def _refuse_change(
        self, conn: Connection, msg: Message, name: str, exc: StorageError, action: int
    ) -> None:
        if isinstance(exc, BackPressure):
            self.trips.trip(exc.key)
        _throttled.warning("refusing a change of record %r: %s", name, exc)
        reply = routed_error(msg, action, name)
        reply.data = dumps(str(exc))
        conn.send(reply)

    def cluster_change(
        self, name: str, record: Record | None, text: str | None, local: Any
    ) -> None:
        """A change the cluster committed (any node's, this one's too), in the cluster's order:
        serve this node's subscribers. ``local`` is ``(message, writer)`` for this node's
        writes (the writer is not sent its own change, and the change goes out as written:
        a PATCH stays a PATCH), ``(None, deleter)`` for its deletes."""

        # Served at once, even while operations on the record wait in its lane: each of them
        # runs on the newest state served (``Authority.current``), so none answers older.
        self._serve_change(name, record, text, local)

    def _serve_change(self, name: str, record: Record | None, text: str | None, local: Any) -> None:
        msg, writer = local if local is not None else (None, None)
        if record is None:
            self._deleted(name, exclude=writer)
            return
        if record.version == 0 or not self.subscriptions.has_subscribers(name):
            return  # version 0 is a create (SUBSCRIBECREATEANDREAD): one node tells no one
        if msg is not None:
            update = writes.broadcast_frame(msg, record)
        else:
            update = encode(
                Message(Topic.RECORD, R.UPDATE, name=name, version=record.version, data=text)
            )
        self.subscriptions.send(name, update, exclude=writer)

    async def _acknowledge(
        self,
        conn: Connection,
        name: str,
        version: int,
        durable: Awaitable[None],
        correlation_id: str,
    ) -> None:
        failed: bool | None = None  # absent on the acknowledgement
        reason = None
        try:
            await durable
        except StorageError as exc:
            # Debug only: the store has logged why, once per operation.
            log.debug("write %r v%d did not become durable: %s", name, version, exc)
            failed, reason = True, dumps(str(exc))  # the why, for clients that show it
        conn.send(
            Message(
                Topic.RECORD,
                R.RECORD_UPDATE_ERROR if failed else R.WRITE_ACKNOWLEDGEMENT,
                name=name,
                data=reason,
                correlation_id=correlation_id,
                is_write_ack=True,
                is_error=failed,
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- delete, notify, external changes ------------------------------------------------------

    def _delete(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        name = self._name(conn, msg)
        if name is None:
            return None

        async def op(record: Record | None) -> Record | None:
            if self.authority is not None:
                return await self._commit_delete(conn, msg, name, record)
            try:
                stored = await self.store.delete(name)
            except StorageError as exc:
                _throttled.warning("deleting record %r failed: %s", name, exc)
                conn.send(error(R.RECORD_DELETE_ERROR, name, R.DELETE))
                return record
            # Gone for everyone at once (it reads as absent); the deleter hears once it is durable.
            self._deleted(name, exclude=conn)
            self._spawn(self._confirm_delete(conn, name, stored))
            return None

        gate = self._pinned_gate()
        checked: Op = op
        if gate is not None:
            checked = self._checked(gate, conn, msg, name, _DELETE_CHECK, op)
        if self.authority is not None:
            checked = self._retrying(checked, name)
        return self._lanes.run(name, checked, self._load_error(conn, msg, name), sync=False)

    async def _commit_delete(
        self, conn: Connection, msg: Message, name: str, record: Record | None
    ) -> Record | None:
        """DELETE on a cluster node: a tombstone committed like a write (so a re-create on
        another node comes after it in storage too); DELETE_SUCCESS once storage has it."""
        assert self.authority is not None
        if record is None:  # nothing to delete, but a deletion may not be in storage yet
            self._spawn(self._confirm_delete(conn, name, self.authority.settled(name)))
            return None
        try:
            stored = await self.authority.commit(name, None, record, local=(None, conn), ack=True)
        except (BackPressure, RecordsUnavailable) as exc:
            self._refuse_change(conn, msg, name, exc, R.RECORD_DELETE_ERROR)
            return self.authority.current(name, record)
        assert stored is not None
        self._spawn(self._confirm_delete(conn, name, stored))
        return self.authority.current(name, None)

    async def _confirm_delete(self, conn: Connection, name: str, stored: Awaitable[None]) -> None:
        """DELETE_SUCCESS once storage has the deletion, RECORD_DELETE_ERROR if it never will."""
        try:
            await stored
        except StorageError as exc:
            log.debug("delete of %r did not become durable: %s", name, exc)  # the store logged it
            reply = error(R.RECORD_DELETE_ERROR, name, R.DELETE)
            reply.data = dumps(str(exc))
            conn.send(reply)
            return
        conn.send(Message(Topic.RECORD, R.DELETE_SUCCESS, name=name))

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
            try:
                update = encode(snapshot(R.UPDATE, name, record))
            except UnencodableData as exc:
                self._unreadable(name, exc)
                return
            self.subscriptions.send(name, update)

    def _notify(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        names = self._names(conn, msg)
        if names is None:
            return None
        names = list(dict.fromkeys(names))

        def op_for(name: str) -> Op:
            async def op(record: Record | None) -> Record | None:
                self.store.forget(name)
                fresh = await self.store.load(name)
                # On a cluster node a change is announced to every node's subscribers by the
                # cluster (``cluster_change``), this node's included.
                if self.authority is None and self.subscriptions.has_subscribers(name):
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
                        data=dumps(f"re-reading from storage failed: {failures[0]}"),
                        is_error=True,
                    )
                )
            else:
                conn.send(msg.ack())

        return self._lanes.each(
            names, op_for, lambda name: failures.append, sync=False, finish=finish
        )

    def _on_external_change(self, name: str, record: Record | None) -> None:
        """Store callback: a conflict was resolved in storage's favour (or the record is gone)."""

        def op(_: Record | None) -> Record | None:
            self._pushed(name, record)
            return record

        # Behind a lane: keep arrival order, and make the queued writes see the new snapshot.
        if not self._lanes.defer(name, op):
            self._pushed(name, record)
