"""Placeholder: being written."""

from __future__ import annotations

from typing import Any

from .connection import Connection
from .protocol import Message


class PresenceHandler:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def handle(self, conn: Connection, msg: Message) -> None:
        return None

    def on_disconnect(self, conn: Connection) -> None:
        pass

    def on_login(self, conn: Connection) -> None:
        pass
