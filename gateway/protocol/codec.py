"""Length-delimited protobuf framing of deepstream messages, without any protobuf library.

A frame is ``varint(len) + Message{topic=2 varint, message=3 bytes}``; ``message`` holds the
per-topic message whose field numbers are listed in ``SCHEMAS`` (PROTOCOL.md). Only the numbers
matter on the wire. Hand-written because the schema is small and fixed, and a generated
protobuf module would cost a dependency and more time per message than this does.
"""

from __future__ import annotations

from .constants import ACTIONS, Topic
from .message import Message

__all__ = ["SCHEMAS", "decode", "encode", "encode_payload"]

from ..exceptions import MessageParseError, MessageTooLarge, UnknownAction, UnknownTopic

# Field kinds: varint int32, bool, string, repeated string, map<string,int32>.
INT, BOOL, STR, STRS, MAP = range(5)

# fmt: off
SCHEMAS: dict[int, tuple[tuple[int, str, int], ...]] = {
    Topic.CONNECTION: (
        (1, "action", INT), (2, "data", STR), (3, "is_error", BOOL), (4, "is_ack", BOOL),
        (5, "url", STR), (6, "protocol_version", STR), (7, "sdk_version", STR),
        (8, "sdk_type", STR),
    ),
    Topic.AUTH: ((1, "action", INT), (2, "data", STR), (3, "is_error", BOOL), (4, "is_ack", BOOL)),
    Topic.EVENT: (
        (1, "action", INT), (2, "data", STR), (3, "correlation_id", STR), (4, "is_error", BOOL),
        (5, "is_ack", BOOL), (6, "name", STR), (7, "names", STRS), (8, "subscription", STR),
        (10, "original_topic", INT), (11, "original_action", INT),
    ),
    Topic.RECORD: (
        (1, "action", INT), (2, "data", STR), (3, "correlation_id", STR), (4, "is_error", BOOL),
        (5, "is_ack", BOOL), (6, "name", STR), (7, "names", STRS), (8, "pattern", STR),
        (9, "subscription", STR), (10, "original_action", INT), (11, "is_write_ack", BOOL),
        (12, "path", STR), (13, "version", INT), (14, "versions", MAP),
    ),
    Topic.RPC: (
        (1, "action", INT), (2, "data", STR), (3, "correlation_id", STR), (4, "is_error", BOOL),
        (5, "is_ack", BOOL), (6, "names", STRS), (7, "name", STR), (9, "original_action", INT),
        (10, "requestor_name", STR), (11, "requestor_data", STR),
    ),
    Topic.PRESENCE: (
        (1, "action", INT), (2, "original_topic", INT), (3, "original_action", INT),
        (4, "data", STR), (5, "correlation_id", STR), (6, "is_error", BOOL), (7, "is_ack", BOOL),
        (8, "name", STR), (9, "names", STRS),
    ),
    Topic.PARSER: (
        (1, "action", INT), (2, "data", STR), (8, "original_topic", INT),
        (9, "original_action", INT),
    ),
}
# fmt: on

_BY_NUMBER = {topic: {n: (attr, kind) for n, attr, kind in s} for topic, s in SCHEMAS.items()}
_WIRE_TYPE = {INT: 0, BOOL: 0, STR: 2, STRS: 2, MAP: 2}
_ACTION_VALUES = {int(t): frozenset(int(a) for a in enum) for t, enum in ACTIONS.items()}


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32 negatives are sign-extended to 10 bytes, as protobuf does
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise MessageParseError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _str_field(number: int, text: str) -> bytes:
    raw = text.encode()
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def encode_payload(msg: Message) -> bytes:
    """The per-topic message bytes (the ``message`` field of the envelope)."""
    out = bytearray()
    for number, attr, kind in SCHEMAS[msg.topic]:
        value = getattr(msg, attr)
        if value is None:
            continue
        if kind == STR:
            out += _str_field(number, value)
        elif kind == INT:
            out += _varint(number << 3) + _varint(value)
        elif kind == BOOL:
            out += _varint(number << 3) + (b"\x01" if value else b"\x00")
        elif kind == STRS:
            for item in value:
                out += _str_field(number, item)
        else:  # MAP
            for key, val in value.items():
                entry = _str_field(1, key) + b"\x10" + _varint(val)
                out += _varint(number << 3 | 2) + _varint(len(entry)) + entry
    return bytes(out)


def encode(msg: Message) -> bytes:
    """One complete frame: what goes into one binary WebSocket message."""
    payload = encode_payload(msg)
    body = b"\x10" + _varint(msg.topic) + b"\x1a" + _varint(len(payload)) + payload
    return _varint(len(body)) + body


def _skip(buf: bytes, pos: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(buf, pos)[1]
    if wire == 2:
        size, pos = _read_varint(buf, pos)
        return pos + size
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    raise MessageParseError(f"unsupported wire type {wire}")


def _decode_map_entry(buf: bytes) -> tuple[str, int]:
    key, value, pos, end = "", 0, 0, len(buf)
    while pos < end:
        tag, pos = _read_varint(buf, pos)
        if tag == 0x0A:
            size, pos = _read_varint(buf, pos)
            key = buf[pos : pos + size].decode()
            pos += size
        elif tag == 0x10:
            raw, pos = _read_varint(buf, pos)
            value = _int32(raw)
        else:
            pos = _skip(buf, pos, tag & 7)
    if pos != end:
        raise MessageParseError("map entry runs past its end")
    return key, value


def _decode_payload(topic: int, buf: bytes) -> Message:
    schema = _BY_NUMBER[topic]
    msg = Message(topic, 0)
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        known = schema.get(number)
        if known is None or _WIRE_TYPE[known[1]] != wire:
            pos = _skip(buf, pos, wire)
            continue
        attr, kind = known
        if wire == 0:
            raw, pos = _read_varint(buf, pos)
            setattr(msg, attr, bool(raw) if kind == BOOL else _int32(raw))
            continue
        size, pos = _read_varint(buf, pos)
        chunk = buf[pos : pos + size]
        if len(chunk) != size:
            raise MessageParseError("field runs past the end of the message")
        pos += size
        if kind == STR:
            setattr(msg, attr, chunk.decode())
        elif kind == STRS:
            msg.names.append(chunk.decode())
        else:
            key, value = _decode_map_entry(chunk)
            if msg.versions is None:
                msg.versions = {}
            msg.versions[key] = value
    if pos != end:
        raise MessageParseError("field runs past the end of the message")
    return msg


def decode(frame: bytes, max_size: int = 1 << 20) -> Message:
    """Decode one frame.

    Raises ``MessageTooLarge``, ``MessageParseError`` (not protobuf, bad UTF-8),
    ``UnknownTopic`` or ``UnknownAction``; the last two carry the numbers for the reply.
    """
    if len(frame) > max_size:
        raise MessageTooLarge(len(frame), max_size)
    try:
        size, pos = _read_varint(frame, 0)
        body = frame[pos : pos + size]
        if len(body) != size:
            raise MessageParseError("frame shorter than its length prefix")
        topic, payload, pos = 0, b"", 0
        while pos < size:
            tag, pos = _read_varint(body, pos)
            if tag == 0x10:
                raw, pos = _read_varint(body, pos)
                topic = _int32(raw)
            elif tag == 0x1A:
                length, pos = _read_varint(body, pos)
                payload = body[pos : pos + length]
                if len(payload) != length:
                    raise MessageParseError("payload runs past the end of the frame")
                pos += length
            else:
                pos = _skip(body, pos, tag & 7)
        if pos != size:
            raise MessageParseError("field runs past the end of the frame")
        if topic not in _BY_NUMBER:
            raise UnknownTopic(topic)
        msg = _decode_payload(topic, payload)
    except UnicodeDecodeError as exc:
        raise MessageParseError("string field is not valid UTF-8") from exc
    if msg.action not in _ACTION_VALUES[topic]:
        raise UnknownAction(topic, msg.action)
    return msg
