"""RECORD messages built in more than one place, and the JSON text they carry.

Every builder is pure; a field left ``None`` is absent on the wire, so each builder sets exactly
the fields the reference server sends for that message.
"""

from __future__ import annotations

from ..protocol import Message, Topic, payload
from ..store import Record

__all__ = ["dumps", "error", "routed_error", "snapshot"]

MISSING_DATA = "{}"
"""The data a missing record reads as (with version -1)."""


dumps = payload.dumps
"""Compact JSON text; raises ``UnencodableData`` rather than write what is not JSON."""


def snapshot(action: int, name: str, record: Record | None) -> Message:
    """``record`` as the wire carries it (READ_RESPONSE, UPDATE): its version and JSON data.

    A missing record (``None``) reads as version -1 with ``{}``.
    """
    if record is None:
        return Message(Topic.RECORD, action, name=name, version=-1, data=MISSING_DATA)
    return Message(Topic.RECORD, action, name=name, version=record.version, data=dumps(record.data))


def error(action: int, name: str | None, original_action: int | None = None) -> Message:
    """An error about ``name``, with the action that caused it if the client needs it."""
    return Message(Topic.RECORD, action, name=name, original_action=original_action, is_error=True)


def routed_error(msg: Message, action: int, name: str | None) -> Message:
    """An error about ``msg``, carrying what the client needs to route it: the original action,
    the correlation id and whether it waits for a write acknowledgement."""
    return Message(
        Topic.RECORD,
        action,
        name=name,
        original_action=msg.action,
        correlation_id=msg.correlation_id,
        is_write_ack=msg.is_write_ack or None,
        is_error=True,
    )
