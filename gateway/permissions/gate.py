"""Where permissions meet messages: which rule each action asks, and how a refusal is answered.

The map follows the reference server's rules map: record READ/HEAD/SUBSCRIBE* ask ``read``,
writes ``write`` (``create`` first for a missing record), DELETE ``delete``, LISTEN ``listen``,
NOTIFY ``notify``; event EMIT ``publish``, SUBSCRIBE ``subscribe``, LISTEN ``listen``; rpc
PROVIDE ``provide``, REQUEST ``request``; presence SUBSCRIBE/QUERY (per user) and their _ALL
forms ``allow`` (the _ALL forms with the name ``""``, which only ``*`` matches). Every other
action (unsubscribe, responses, accepts, ...) is not checked, as there.

Invariants:

* A bulk message is checked per name; refused names are answered one by one and dropped from
  the message, which goes on with the rest (not at all if none is left), as the reference does.
* A refusal is MESSAGE_DENIED (the rule is false, or no pattern matches) or
  MESSAGE_PERMISSION_ERROR (the rule failed, or its check raised: the other names of the
  message are still decided), carrying ``originalAction``, ``name``, and the
  message's ``correlationId`` and ``isWriteAck``: what the official client routes to callbacks.
* The rule file is swapped whole on reload (``permissions``); a check uses the one it started
  with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Final

from ..connection import Connection
from ..exceptions import (
    InvalidData,
    StorageError,
    storage_error_kind,
)
from ..limits import LimitTrips, ThrottledLog
from ..protocol import (
    EventAction,
    Message,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
    payload,
)
from ..store import RecordStore
from .jsvalues import UNDEFINED
from .valve import CROSS_READS_KEY, Permissions, User, Verdict

__all__ = ["Gate"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

_E, _R, _P = EventAction, RpcAction, PresenceAction
_RULES: Final[dict[int, tuple[str, dict[int, str]]]] = {
    Topic.RECORD: (
        "record",
        {
            RecordAction.SUBSCRIBE: "read",
            RecordAction.LISTEN: "listen",
            RecordAction.NOTIFY: "notify",
        },
    ),
    Topic.EVENT: (
        "event",
        {_E.EMIT: "publish", _E.SUBSCRIBE: "subscribe", _E.LISTEN: "listen"},
    ),
    Topic.RPC: ("rpc", {_R.PROVIDE: "provide", _R.REQUEST: "request"}),
    Topic.PRESENCE: (
        "presence",
        {
            _P.SUBSCRIBE: "allow",
            _P.QUERY: "allow",
            _P.SUBSCRIBE_ALL: "allow",
            _P.QUERY_ALL: "allow",
        },
    ),
}
"""Actions checked before their handler. The other record actions are checked inside the
record's lane (``RecordHandler``), where the record's current data is known."""
_WITH_DATA: Final = frozenset({(Topic.EVENT, _E.EMIT), (Topic.RPC, _R.REQUEST)})
_ALL_NAME: Final = ""
_DENIED: Final[dict[int, tuple[int, int]]] = {
    Topic.EVENT: (_E.MESSAGE_DENIED, _E.MESSAGE_PERMISSION_ERROR),
    Topic.RECORD: (RecordAction.MESSAGE_DENIED, RecordAction.MESSAGE_PERMISSION_ERROR),
    Topic.RPC: (_R.MESSAGE_DENIED, _R.MESSAGE_PERMISSION_ERROR),
    Topic.PRESENCE: (_P.MESSAGE_DENIED, _P.MESSAGE_PERMISSION_ERROR),
}


def user_of(conn: Connection) -> User:
    """``user`` in a rule: the connection's login (serverData as ``data``)."""
    return User(conn.user_id, conn.authenticated, conn.server_data)


class Gate:
    """The loaded permission file and the store ``_()`` reads through."""

    def __init__(
        self,
        permissions: Permissions,
        store: RecordStore,
        *,
        max_json_depth: int = payload.DEFAULT_MAX_DEPTH,
        trips: LimitTrips | None = None,
        refuse_nul: bool = False,
        read_errors: dict[str, int] | None = None,
    ) -> None:
        self.permissions = permissions
        self.store = store
        self.max_json_depth = max_json_depth
        self.trips = trips if trips is not None else LimitTrips()
        self.refuse_nul = refuse_nul
        """Storage cannot hold U+0000 (``connectors.base.NUL``): no record so named exists."""
        self.read_errors: dict[str, int] = read_errors if read_errors is not None else {}
        """Reads of ``_()`` storage failed, by kind (shared by pinned gates; ``/metrics``)."""

    def pinned(self) -> Gate:
        """A gate that keeps the rules loaded now, whatever a reload does later."""
        return Gate(
            self.permissions,
            self.store,
            max_json_depth=self.max_json_depth,
            trips=self.trips,
            refuse_nul=self.refuse_nul,
            read_errors=self.read_errors,
        )

    async def read(self, name: str) -> Any:
        """``_('name')``: the record's data through the store's cache; None if missing.

        A name storage cannot hold (built by a rule from what a client sent) is a record that
        cannot exist: None, without asking storage, which would fail on it."""
        if self.refuse_nul and "\x00" in name:
            return None
        try:
            record = await self.store.load(name)
        except StorageError as exc:
            # The rule fails (MESSAGE_PERMISSION_ERROR): say so apart from policy refusals
            # (INFO, throttled together), so an outage is not read as users being denied.
            kind = storage_error_kind(exc)
            self.read_errors[kind] = self.read_errors.get(kind, 0) + 1
            _throttled.warning(
                "a permission rule's read of record %r failed (storage %s: %s): "
                "refused with MESSAGE_PERMISSION_ERROR",
                name,
                kind,
                exc,
            )
            raise
        return None if record is None else record.data

    # -- checks ------------------------------------------------------------------------------

    def uses(self, section: str, rule_type: str, name: str, variable: str) -> bool:
        """Whether the rule deciding ``name`` reads ``variable`` (``data``, ``oldData``)."""
        found = self.permissions.lookup(section, rule_type, name)
        expression = None if found is None else found[0].expression
        return expression is not None and variable in expression.names

    def needs_io(self, section: str, rule_types: tuple[str, ...], name: str) -> bool:
        """Whether any of the rules deciding ``name`` reads other records (``_()``)."""
        for rule_type in rule_types:
            found = self.permissions.lookup(section, rule_type, name)
            expression = None if found is None else found[0].expression
            if expression is not None and expression.reads_records:
                return True
        return False

    def decide(
        self,
        conn: Connection,
        section: str,
        rule_type: str,
        name: str,
        *,
        data: Any = UNDEFINED,
        old_data: Any = None,
        load_old: bool = False,
    ) -> tuple[Verdict, str] | Awaitable[tuple[Verdict, str]]:
        """The verdict now, or (the rule reads other records) an awaitable of it.

        ``load_old``: ``old_data`` is not known; the rule's ``oldData`` loads the record.
        """
        permissions, user = self.permissions, user_of(conn)
        if not (load_old and self.uses(section, rule_type, name, "oldData")):
            now = permissions.check_now(
                section, rule_type, name, user, data=data, old_data=old_data
            )
            if now is not None:
                return now
            load_old = False

        async def current() -> Any:
            return await self.read(name) if load_old else old_data

        return permissions.check(
            section, rule_type, name, user, data=data, old_data=current, read=self.read
        )

    def filter(self, conn: Connection, msg: Message) -> Message | Awaitable[Message | None] | None:
        """``msg`` if allowed, a copy without its refused names (bulk), or None after answering
        every refusal; an awaitable of that when a rule reads other records."""
        rules = _RULES.get(msg.topic)
        rule_type = None if rules is None else rules[1].get(msg.action)
        if rule_type is None:
            return msg
        section = rules[0]  # type: ignore[index]
        data: Any = UNDEFINED
        if (
            (msg.topic, msg.action) in _WITH_DATA
            and msg.data is not None
            and self.uses(section, rule_type, msg.name or "", "data")
        ):
            # Data that is not JSON stays undefined for the rule (the check still runs); the
            # handler then refuses it as it always does.
            with contextlib.suppress(InvalidData):
                data = payload.loads(msg.data, max_depth=self.max_json_depth)
        if msg.names:
            names = msg.names
        elif msg.action in (_P.SUBSCRIBE_ALL, _P.QUERY_ALL) and msg.topic == Topic.PRESENCE:
            names = [_ALL_NAME]
        else:
            names = [msg.name if msg.name is not None else ""]
        load_old = msg.topic == Topic.RECORD
        verdicts = [
            self.decide(conn, section, rule_type, name, data=data, load_old=load_old)
            for name in names
        ]
        if all(type(v) is tuple for v in verdicts):
            return self._sift(conn, msg, names, verdicts)  # type: ignore[arg-type]
        return self._sift_later(conn, msg, names, verdicts)

    async def _sift_later(
        self,
        conn: Connection,
        msg: Message,
        names: list[str],
        verdicts: list[tuple[Verdict, str] | Awaitable[tuple[Verdict, str]]],
    ) -> Message | None:
        """Await every pending verdict, one after the other; a verdict that raises (not a
        storage error: the rule turns those into ERROR) is that name's ERROR, and the others
        are still awaited. If this is cancelled, the verdicts not started are closed, so none
        is left never awaited."""
        decided: list[tuple[Verdict, str]] = []
        try:
            for name, pending in zip(names, verdicts, strict=True):
                if isinstance(pending, tuple):
                    verdict = pending
                else:
                    try:
                        verdict = await pending
                    except Exception as exc:  # a bug, not a refusal: logged with its traceback
                        _throttled.exception("checking %r of %r failed", name, conn)
                        verdict = Verdict.ERROR, f"the check failed: {type(exc).__name__}"
                decided.append(verdict)
        finally:
            for rest in verdicts[len(decided) + 1 :]:
                if inspect.iscoroutine(rest):
                    rest.close()
        return self._sift(conn, msg, names, decided)

    def _sift(
        self,
        conn: Connection,
        msg: Message,
        names: list[str],
        verdicts: list[tuple[Verdict, str]],
    ) -> Message | None:
        allowed = []
        for name, (verdict, why) in zip(names, verdicts, strict=True):
            if verdict is Verdict.ALLOWED:
                allowed.append(name)
            else:
                self.refuse(conn, msg, name, verdict, why)
        if len(allowed) == len(names):
            return msg
        if not allowed or not msg.names:
            return None
        return dataclasses.replace(msg, names=allowed)

    def refuse(self, conn: Connection, msg: Message, name: str, verdict: Verdict, why: str) -> None:
        """Answer MESSAGE_DENIED / MESSAGE_PERMISSION_ERROR for ``name`` of ``msg``."""
        if verdict is Verdict.ERROR and why.endswith(f"({CROSS_READS_KEY})"):
            self.trips.trip(CROSS_READS_KEY)
        denied, failed = _DENIED[msg.topic]
        _throttled.info("%r refused %r: %s", conn, name, why)  # never the data: it may be secret
        conn.send(
            Message(
                msg.topic,
                failed if verdict is Verdict.ERROR else denied,
                name=name if name or msg.name is not None else None,
                original_action=msg.action,
                correlation_id=msg.correlation_id or None,
                is_write_ack=True if msg.is_write_ack else None,
                is_error=True,
            )
        )
