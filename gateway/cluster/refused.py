"""Records on a cluster node, until records are clustered (docs/cluster.md): refused.

Serving records from node-local caches would let two nodes accept version N+1 of a record,
the one thing a cluster must never do; so every RECORD message is answered MESSAGE_DENIED
(with what the client needs to route it) and nothing is read or written.
"""

from __future__ import annotations

import json
import logging

from ..connection import Connection
from ..protocol import Message, RecordAction, Topic

__all__ = ["RecordsRefused"]

log = logging.getLogger(__name__)

REASON = "records are not yet served by a recordgate cluster (docs/cluster.md)"


class RecordsRefused:
    def __init__(self) -> None:
        self._logged = False

    def handle(self, conn: Connection, msg: Message) -> None:
        if not self._logged:
            self._logged = True
            log.warning("refusing RECORD messages: %s", REASON)
        names: list[str | None] = list(msg.names) if msg.names else [msg.name]
        for name in names:
            conn.send(
                Message(
                    Topic.RECORD,
                    RecordAction.MESSAGE_DENIED,
                    name=name,
                    original_action=msg.action,
                    correlation_id=msg.correlation_id,
                    is_write_ack=msg.is_write_ack or None,
                    data=json.dumps(REASON),
                    is_error=True,
                )
            )

    def on_disconnect(self, conn: Connection) -> None:
        return None
