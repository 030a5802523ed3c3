"""The sans-I/O protocol core: message numbers, the codec, and the per-connection session.

Nothing in this package performs I/O or imports asyncio.
"""

from . import payload
from .codec import decode, encode
from .constants import (
    AuthAction,
    ConnectionAction,
    EventAction,
    ParserAction,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
)
from .message import Message

__all__ = [
    "AuthAction",
    "ConnectionAction",
    "EventAction",
    "Message",
    "ParserAction",
    "PresenceAction",
    "RecordAction",
    "RpcAction",
    "Topic",
    "decode",
    "encode",
    "payload",
]
