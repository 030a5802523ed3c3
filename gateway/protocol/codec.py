"""Length-delimited protobuf framing of deepstream messages, without any protobuf library.

A frame is ``varint(len) + Message{topic=2 varint, message=3 bytes}``; ``message`` holds the
per-topic message whose field numbers are listed in ``SCHEMAS`` (PROTOCOL.md). Only the numbers
matter on the wire. Hand-written because the schema is small and fixed, and a generated
protobuf module would cost a dependency and more time per message than this does.
"""

from __future__ import annotations

from .constants import ACTIONS, RpcAction, Topic
from .message import Message

__all__ = [
    "SCHEMAS",
    "decode",
    "decode_rpc",
    "encode",
    "encode_change",
    "encode_field",
    "encode_frame",
    "encode_payload",
]

from ..exceptions import (
    LoneSurrogateText,
    MessageParseError,
    MessageTooLarge,
    UnknownAction,
    UnknownTopic,
)

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

_WIRE_TYPE = {INT: 0, BOOL: 0, STR: 2, STRS: 2, MAP: 2}
_ACTION_VALUES = {int(t): frozenset(int(a) for a in enum) for t, enum in ACTIONS.items()}
_SMALL = [bytes((i,)) for i in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int32 negatives are sign-extended to 10 bytes, as protobuf does
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Per topic, the precomputed tag bytes for encoding, and tag -> (attr, kind) for decoding.
# A decoding tag includes the wire type, so a known field number of the wrong type is unknown.
_ENCODERS = {
    topic: tuple((_varint(n << 3 | _WIRE_TYPE[k]), attr, k) for n, attr, k in schema)
    for topic, schema in SCHEMAS.items()
}
_DECODERS = {
    topic: {n << 3 | _WIRE_TYPE[k]: (attr, k) for n, attr, k in schema}
    for topic, schema in SCHEMAS.items()
}
_BY_BYTE = {
    topic: [fields.get(tag) if tag < 0x80 else None for tag in range(0x100)]
    for topic, fields in _DECODERS.items()
}
"""``_DECODERS`` by a tag's first byte, as lists: the one-byte tags (field numbers up to 15:
all of them) have their field, a first byte >= 0x80 (a longer tag) None, as unknown ones."""


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def encode_payload(msg: Message) -> bytes:
    """The per-topic message bytes (the ``message`` field of the envelope)."""
    try:
        return _encode_payload(msg, "strict")
    except UnicodeEncodeError:
        # Only an error reply echoing a client's own lone surrogate (LoneSurrogateText) gets
        # here: it goes back as protobuf.js wrote it, so the client can route the reply.
        return _encode_payload(msg, "surrogatepass")


def _encode_payload(msg: Message, errors: str) -> bytes:
    strict = errors == "strict"
    out = bytearray()
    for tag, attr, kind in _ENCODERS[msg.topic]:
        value = getattr(msg, attr)
        if value is None:
            continue
        if kind == STR:
            raw = value.encode() if strict else value.encode("utf-8", errors)
            out += tag
            out += _varint(len(raw))
            out += raw
        elif kind == INT:
            out += tag
            out += _varint(value)
        elif kind == BOOL:
            out += tag
            out += b"\x01" if value else b"\x00"
        elif kind == STRS:
            for item in value:
                raw = item.encode() if strict else item.encode("utf-8", errors)
                out += tag
                out += _varint(len(raw))
                out += raw
        else:  # MAP: one (key = 1, value = 2) entry message per item
            for key, val in value.items():
                raw = key.encode()
                entry = b"\x0a" + _varint(len(raw)) + raw + b"\x10" + _varint(val)
                out += tag
                out += _varint(len(entry))
                out += entry
    return bytes(out)


_HEADS = {topic: b"\x10" + _varint(topic) + b"\x1a" for topic in SCHEMAS}
"""Per topic, the envelope up to the message's length: topic = 2, then the tag of message = 3."""
_SMALL_HEADS = {
    topic: [_varint(len(head) + 1 + size) + head + _SMALL[size] for size in range(0x7C)]
    for topic, head in _HEADS.items()
}
"""Per topic, the frame's length and envelope before a message of each size whose frame
length is one byte (frames under 128 bytes: short RPC and event messages)."""


def encode(msg: Message) -> bytes:
    """One complete frame: what goes into one binary WebSocket message."""
    try:
        payload = _encode_payload(msg, "strict")
    except UnicodeEncodeError:
        payload = encode_payload(msg)  # a lone surrogate, echoed in an error reply
    return encode_frame(msg.topic, payload)


def encode_frame(topic: int, payload: bytes) -> bytes:
    """The frame around ``payload``, the bytes of a message of ``topic``: ``encode`` of a
    message is ``encode_frame(msg.topic, encode_payload(msg))``."""
    size = len(payload)
    if size < 0x7C:
        return _SMALL_HEADS[topic][size] + payload
    head = _HEADS[topic] + (_SMALL[size] if size < 0x80 else _varint(size))
    return _varint(len(head) + size) + head + payload


_RECORD = Topic.RECORD.value
_RECORD_TAGS = {attr: tag for tag, attr, _ in _ENCODERS[Topic.RECORD]}
_ACTION_TAG = _RECORD_TAGS["action"]
_DATA_TAG = _RECORD_TAGS["data"]
_NAME_TAG = _RECORD_TAGS["name"]
_PATH_TAG = _RECORD_TAGS["path"]
_VERSION_TAG = _RECORD_TAGS["version"]


def encode_change(
    action: int, name: str, version: int, data: str | None, path: str | None
) -> bytes:
    """``encode(Message(Topic.RECORD, action, name=name, version=version, data=data,
    path=path))``, the frame a record's subscribers get for each write, built from its five
    fields directly (in field-number order, as ``encode`` writes them) rather than by walking
    the schema's fourteen, and joined once rather than appended to piece by piece."""
    try:
        parts = [_ACTION_TAG, _varint(action)]
        if data is not None:
            raw = data.encode()
            size = len(raw)
            parts += (_DATA_TAG, _SMALL[size] if size < 0x80 else _varint(size), raw)
        raw = name.encode()
        size = len(raw)
        parts += (_NAME_TAG, _SMALL[size] if size < 0x80 else _varint(size), raw)
        if path is not None:
            raw = path.encode()
            size = len(raw)
            parts += (_PATH_TAG, _SMALL[size] if size < 0x80 else _varint(size), raw)
    except UnicodeEncodeError:  # a lone surrogate: encode's own fallback
        return encode(
            Message(Topic.RECORD, action, name=name, version=version, data=data, path=path)
        )
    parts += (_VERSION_TAG, _varint(version))
    return encode_frame(_RECORD, b"".join(parts))


_STRING_TAGS = [_varint(number << 3 | 2) for number in range(16)]
"""The tag of a string field by field number, for the one-byte ones."""


def encode_field(number: int, value: str) -> bytes:
    """One string field of a message's payload, as ``encode_payload`` writes it (text that
    came from a decoded message: a lone surrogate raises UnicodeEncodeError). For callers
    that build a payload from parts they reuse: fields in schema order give ``encode``'s
    bytes."""
    raw = value.encode()
    size = len(raw)
    tag = _STRING_TAGS[number] if number < 16 else _varint(number << 3 | 2)
    return tag + (_SMALL[size] if size < 0x80 else _varint(size)) + raw


# Decoding reads one-byte varints inline (nearly every tag, length and action is one) and
# leaves the rest to ``_varint_rest``. Reading past the end of the frame raises IndexError,
# which ``decode`` reports as a parse error; fields that run past their message are checked.


def _varint_rest(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """Finish a varint whose first byte, ``first`` (>= 0x80), was read before ``pos``."""
    result, shift = first & 0x7F, 7
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift > 63:
            raise MessageParseError("varint longer than 10 bytes")


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    byte = buf[pos]
    return (byte, pos + 1) if byte < 0x80 else _varint_rest(buf, pos + 1, byte)


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


def _decode_map_entry(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    key, value = "", 0
    while pos < end:
        tag, pos = _read_varint(buf, pos)
        if tag == 0x0A:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                break
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


def _decode_payload(topic: int, buf: bytes, pos: int, end: int, strict: bool = True) -> Message:
    """The per-topic message in ``buf[pos:end]``; ``strict=False`` reads strings with lone
    surrogates kept (``surrogatepass``), to tell them from other bad UTF-8."""
    fields = _BY_BYTE[topic]
    msg = Message(topic, 0)
    while pos < end:
        field = fields[buf[pos]]
        pos += 1
        if field is None:  # an unknown field, or a tag longer than a byte
            tag = buf[pos - 1]
            if tag >= 0x80:
                tag, pos = _varint_rest(buf, pos, tag)
                field = _DECODERS[topic].get(tag)
            if field is None:
                pos = _skip(buf, pos, tag & 7)
                continue
        attr, kind = field
        value = buf[pos]  # the varint value, or the length of a length-delimited field
        pos += 1
        if value >= 0x80:
            value, pos = _varint_rest(buf, pos, value)
        if kind == STR:  # the commonest first: name, data, path, correlation id
            stop = pos + value
            if stop > end:
                raise MessageParseError("field runs past the end of the message")
            if strict:  # (bytes.decode: str(bytes, "utf-8") costs twice as much)
                setattr(msg, attr, buf[pos:stop].decode())
            else:
                setattr(msg, attr, buf[pos:stop].decode("utf-8", "surrogatepass"))
            pos = stop
        elif kind == INT:
            setattr(msg, attr, value if value < 0x80000000 else _int32(value))
        elif kind == BOOL:
            setattr(msg, attr, value != 0)
        else:
            stop = pos + value
            if stop > end:
                raise MessageParseError("field runs past the end of the message")
            if kind == STRS:
                raw = buf[pos:stop]
                msg.names.append(raw.decode() if strict else raw.decode("utf-8", "surrogatepass"))
            else:
                key, val = _decode_map_entry(buf, pos, stop)
                if msg.versions is None:
                    msg.versions = {}
                msg.versions[key] = val
            pos = stop
    if pos != end:
        raise MessageParseError("field runs past the end of the message")
    return msg


def _envelope(frame: bytes) -> tuple[int, int, int]:
    """The topic of the frame's envelope and where its message starts and stops; raises
    ``MessageParseError`` or ``IndexError`` for a malformed one."""
    size, pos = frame[0], 1
    if size >= 0x80:
        size, pos = _varint_rest(frame, 1, size)
    end = pos + size
    if end > len(frame):
        raise MessageParseError("frame shorter than its length prefix")
    topic, start, stop = 0, 0, 0
    if end - pos >= 4 and frame[pos] == 0x10 and frame[pos + 1] < 0x80 and frame[pos + 2] == 0x1A:
        # The envelope as clients write it, topic then message and nothing after: read
        # here in a few steps; the loop below, which would read the same, then has nothing
        # left. Anything else (and any varint topic) goes to the loop.
        length, first = frame[pos + 3], pos + 4
        if length >= 0x80:
            length, first = _varint_rest(frame, first, length)
        if first + length == end:
            topic, start, stop, pos = frame[pos + 1], first, end, end
    while pos < end:
        tag = frame[pos]
        pos += 1
        if tag == 0x10:
            topic, pos = _read_varint(frame, pos)
            topic = _int32(topic)
        elif tag == 0x1A:
            length, pos = _read_varint(frame, pos)
            start, stop = pos, pos + length
            pos = stop
        else:
            if tag >= 0x80:
                tag, pos = _varint_rest(frame, pos, tag)
            pos = _skip(frame, pos, tag & 7)
    if pos != end:
        raise MessageParseError("field runs past the end of the frame")
    return topic, start, stop


def decode(frame: bytes, max_size: int = 1 << 20) -> Message:
    """Decode one frame. Bytes after the length-delimited message are ignored, as protobuf.js
    ``decodeDelimited`` ignores them.

    Raises ``MessageTooLarge``, ``MessageParseError`` (not protobuf, bad UTF-8),
    ``UnknownTopic`` or ``UnknownAction``; the last two carry the numbers for the reply.
    ``LoneSurrogateText`` (a known action whose only fault is a lone UTF-16 surrogate in a
    string, which has no UTF-8 form) carries the message, for an error reply that echoes it.
    """
    if len(frame) > max_size:
        raise MessageTooLarge(len(frame), max_size)
    try:
        size = frame[0]
        if (
            4 <= size < 0x80
            and size < len(frame)
            and frame[1] == 0x10
            and frame[2] < 0x80
            and frame[3] == 0x1A
            and frame[4] == size - 4
        ):
            # A frame under 128 bytes as clients write it (one-byte lengths, topic then the
            # message and nothing after): what ``_envelope`` reads, in one test.
            topic, start, stop = frame[2], 5, size + 1
        else:
            topic, start, stop = _envelope(frame)
        if topic not in _DECODERS:
            raise UnknownTopic(topic)
        msg = _decode_payload(topic, frame, start, stop)
    except IndexError as exc:
        raise MessageParseError("message ends in the middle of a field") from exc
    except UnicodeDecodeError as exc:
        try:
            msg = _decode_payload(topic, frame, start, stop, strict=False)
        except (UnicodeDecodeError, IndexError):
            raise MessageParseError("string field is not valid UTF-8") from exc
        if msg.action not in _ACTION_VALUES[topic]:
            raise UnknownAction(topic, msg.action) from None
        raise LoneSurrogateText(msg) from None
    if msg.action not in _ACTION_VALUES[topic]:
        raise UnknownAction(topic, msg.action)
    return msg


_RPC = Topic.RPC.value
_PLAIN_RPC = {
    bytes((size - 1, 0x10, _RPC, 0x1A, size - 5, 0x08, action)): size
    for size in range(10, 0x81)
    for action in (RpcAction.REQUEST, RpcAction.ACCEPT, RpcAction.RESPONSE)
}
"""The first seven bytes of each frame ``decode_rpc`` reads (its one-byte lengths, the
envelope, the action), and the frame's length that goes with them."""


def decode_rpc(frame: bytes) -> tuple[int, str, str, str | None, bytes] | None:
    """A client's RPC REQUEST, ACCEPT or RESPONSE as protobuf.js writes one up to 128 bytes,
    read without a ``Message``: the plain envelope (one-byte lengths, topic then message,
    nothing after), then action, data (if any), correlation id and name, in that order (field
    number order) and nothing else.

    Returns ``(action, name, correlation_id, data, data_field)``, the fields ``decode`` gives,
    with ``data_field`` the data field as it is in the frame (tag, length, text; b"" without
    data): what ``encode_field`` gives for it, so it can be forwarded as it came. Returns
    None for any other frame, and for text that is not UTF-8: ``decode`` reads those, and
    tells their errors apart.
    """
    end = len(frame)
    if _PLAIN_RPC.get(frame[:7]) != end:
        return None
    # Each length is one byte (the frame is 128 bytes at most), and a length that runs past the end
    # leaves the next read past it (IndexError) or the last field's stop past ``end``.
    try:
        pos = 7
        data, data_field = None, b""
        if frame[pos] == 0x12:
            stop = pos + 2 + frame[pos + 1]
            data_field = frame[pos:stop]
            data = frame[pos + 2 : stop].decode()
            pos = stop
        if frame[pos] != 0x1A:
            return None
        stop = pos + 2 + frame[pos + 1]
        correlation_id = frame[pos + 2 : stop].decode()
        if frame[stop] != 0x3A or stop + 2 + frame[stop + 1] != end:
            return None
        name = frame[stop + 2 : end].decode()
    except (IndexError, UnicodeDecodeError):
        return None
    return frame[6], name, correlation_id, data, data_field
