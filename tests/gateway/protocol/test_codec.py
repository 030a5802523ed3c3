"""The protobuf codec: exact bytes, round trips of every field kind, and hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.exceptions import (
    LoneSurrogateText,
    MessageParseError,
    MessageTooLarge,
    ProtocolError,
    UnknownAction,
    UnknownTopic,
)
from gateway.protocol import Message, RpcAction, Topic, decode, encode
from gateway.protocol.codec import (
    BOOL,
    INT,
    MAP,
    SCHEMAS,
    STR,
    STRS,
    _envelope,
    decode_rpc,
    encode_change,
    encode_field,
)

# Frames produced by protobuf.js, the reference's own builder:
# require('@deepstream/protobuf/dist/src/message-builder').getMessage(msg, false)
GOLDEN = {
    "3f10021a3b08052a1e77733a2f2f6c6f63616c686f73743a363032302f6465657073747265616d3204302e3161"
    "3a05372e302e35420a6a617661736372697074": Message(
        Topic.CONNECTION,
        5,
        url="ws://localhost:6020/deepstream",
        protocol_version="0.1a",
        sdk_version="7.0.5",
        sdk_type="javascript",
    ),
    "1c10031a18080212147b22757365726e616d65223a22616c696365227d": Message(
        Topic.AUTH, 2, data='{"username":"alice"}'
    ),
    "2310041a1f0802120b7b2261223a5b312c325d7d320e6e6577732fc3bc6ec3af636f6465": Message(
        Topic.EVENT, 2, name="news/ünïcode", data='{"a":[1,2]}'
    ),
    "1110041a0d08031a01373a01613a01623a00": Message(
        Topic.EVENT, 3, names=["a", "b", ""], correlation_id="7"
    ),
    "2810051a24081212077b2278223a317d1a01333207757365722f3432580168ffffffffffffffffff01": Message(
        Topic.RECORD,
        18,
        name="user/42",
        version=-1,
        data='{"x":1}',
        is_write_ack=True,
        correlation_id="3",
    ),
    "1d10051a19080872050a01611001720e0a016210ffffffffffffffffff01": Message(
        Topic.RECORD, 8, versions={"a": 1, "b": -1}
    ),
    "0d10051a09080328003201726800": Message(Topic.RECORD, 3, name="r", is_ack=False, version=0),
    "2210061a1e080212055b312c325d1a0263313a036164645201755a077b226b223a317d": Message(
        Topic.RPC,
        2,
        name="add",
        correlation_id="c1",
        data="[1,2]",
        requestor_name="u",
        requestor_data='{"k":1}',
    ),
    "0d10071a090801100518ac023001": Message(
        Topic.PRESENCE, 1, original_topic=5, original_action=300, is_error=True
    ),
    "0810011a0408014032": Message(Topic.PARSER, 1, original_topic=50),
}


@pytest.mark.parametrize(("hex_frame", "msg"), GOLDEN.items(), ids=lambda v: str(v)[:16])
def test_bytes_are_those_of_protobuf_js(hex_frame: str, msg: Message) -> None:
    assert encode(msg).hex() == hex_frame
    assert decode(bytes.fromhex(hex_frame)) == msg


def _full(topic: int, variant: int) -> Message:
    """A message of ``topic`` with every field of its schema set (two different fillings)."""
    msg = Message(topic, 0)
    for number, attr, kind in SCHEMAS[topic]:
        if kind == INT:
            value: object = [-(2**31), 2**31 - 1, -1, 0][(number + variant) % 4]
        elif kind == BOOL:
            value = (number + variant) % 2 == 0
        elif kind == STR:
            value = ["", "ünï/cødé \x00 ✓", "x" * 300][(number + variant) % 3]
        elif kind == STRS:
            value = [["a", "", "ü" * 200], []][variant % 2]
        else:
            assert kind == MAP
            value = [{"a": -1, "": 0, "ü" * 130: 2**31 - 1}, {}][variant % 2]
        setattr(msg, attr, value)
    msg.action = 1  # every topic has action 1
    if variant % 2 and msg.versions == {}:
        msg.versions = None  # an empty map is absent on the wire
    return msg


@pytest.mark.parametrize("variant", [0, 1, 2, 3])
@pytest.mark.parametrize("topic", list(SCHEMAS), ids=lambda t: Topic(t).name)
def test_every_field_of_every_topic_round_trips(topic: int, variant: int) -> None:
    msg = _full(topic, variant)
    assert decode(encode(msg)) == msg


def test_negative_int32_is_a_ten_byte_varint() -> None:
    frame = encode(Message(Topic.RECORD, 18, name="r", version=-1))
    assert bytes.fromhex("68ffffffffffffffffff01") in frame
    assert decode(frame).version == -1
    assert decode(encode(Message(Topic.RECORD, 18, version=-(2**31)))).version == -(2**31)


def test_fields_the_topic_does_not_have_are_dropped() -> None:
    msg = Message(Topic.CONNECTION, 101, name="n", original_topic=4, version=3)
    assert decode(encode(msg)) == Message(Topic.CONNECTION, 101)


def test_absent_and_default_values_differ() -> None:
    absent = decode(encode(Message(Topic.RECORD, 3)))
    assert (absent.version, absent.is_ack, absent.data, absent.versions) == (None, None, None, None)
    assert absent.names == []
    zero = decode(encode(Message(Topic.RECORD, 3, version=0, is_ack=False, data="")))
    assert (zero.version, zero.is_ack, zero.data) == (0, False, "")


def _frame(topic: int, payload: bytes) -> bytes:
    body = bytes([0x10, topic, 0x1A, len(payload)]) + payload
    return bytes([len(body)]) + body


UNKNOWN_FIELDS = {
    "varint": bytes.fromhex("f801ffffffffffffffffff01"),  # field 31
    "fixed64": bytes.fromhex("f9010102030405060708"),
    "length-delimited": bytes.fromhex("fa0103616263"),
    "fixed32": bytes.fromhex("fd0101020304"),
    "known number, wrong wire type": bytes.fromhex("3508090a0b"),  # name (6) as fixed32
}


@pytest.mark.parametrize("extra", UNKNOWN_FIELDS.values(), ids=list(UNKNOWN_FIELDS))
def test_unknown_fields_are_skipped(extra: bytes) -> None:
    payload = bytes.fromhex("0802") + extra + bytes.fromhex("320178")  # EMIT, ..., name "x"
    assert decode(_frame(Topic.EVENT, payload)) == Message(Topic.EVENT, 2, name="x")


def test_a_known_field_with_a_tag_of_two_bytes_is_read() -> None:
    """Protobuf readers accept a tag written as a longer varint than it needs: the field is
    still the field (tags are looked up by their first byte, and a first byte >= 0x80 reads
    on), not an unknown one to skip."""
    payload = bytes.fromhex("0802") + bytes.fromhex("b200") + bytes.fromhex("03616263")
    assert decode(_frame(Topic.EVENT, payload)) == Message(Topic.EVENT, 2, name="abc")
    payload = bytes.fromhex("880002") + bytes.fromhex("3203616263")  # the action's tag, too
    assert decode(_frame(Topic.EVENT, payload)) == Message(Topic.EVENT, 2, name="abc")


def test_unknown_envelope_fields_are_skipped() -> None:
    body = bytes.fromhex("0a0178") + bytes.fromhex("1004") + bytes.fromhex("1a020802")
    assert decode(bytes([len(body)]) + body) == Message(Topic.EVENT, 2)


@pytest.mark.parametrize(
    "body",
    [
        "1a0208021004",  # message before topic
        "10051a0208021004",  # the topic twice: the last one counts
        "10041a0208021a020803",  # the message twice: the last one counts
        "10041a020802",  # the plain envelope, below with extra fields after it
        "10041a0208020a0178",
        "10041a0208021803",
        "1084001a020802",  # a topic written in two bytes
    ],
)
def test_every_envelope_decodes_as_protobuf_reads_it(body: str) -> None:
    """Frames as clients write them (topic, then message, nothing else) take a shorter path;
    any other envelope must decode exactly as before: fields in any order, repeated ones last
    wins, unknown ones skipped."""
    raw = bytes.fromhex(body)
    expected = {
        "1a0208021004": Message(Topic.EVENT, 2),
        "10051a0208021004": Message(Topic.EVENT, 2),
        "10041a0208021a020803": Message(Topic.EVENT, 3),
        "10041a020802": Message(Topic.EVENT, 2),
        "10041a0208020a0178": Message(Topic.EVENT, 2),
        "10041a0208021803": Message(Topic.EVENT, 2),
        "1084001a020802": Message(Topic.EVENT, 2),
    }[body]
    assert decode(bytes([len(raw)]) + raw) == expected


def _outcome(frame: bytes) -> object:
    try:
        return decode(frame)
    except ProtocolError as exc:
        return type(exc), str(exc), getattr(exc, "topic", None), getattr(exc, "action", None)


@given(
    size=st.integers(0, 0x7F),
    topic=st.sampled_from([Topic.EVENT, Topic.RPC, 0x7F, 0x80]),
    length_off=st.integers(-1, 1),
    rest_off=st.integers(-1, 1),
    data=st.data(),
)
def test_short_frames_decode_as_the_general_envelope_reads_them(
    size: int, topic: int, length_off: int, rest_off: int, data: st.DataObject
) -> None:
    """A frame under 128 bytes in the plain envelope is read in one test, anything else by
    the general reader (``_envelope``). The same frame with its length written as a
    two-byte varint (valid protobuf) always takes the general reader: both must give the
    same message or the same error, whether the short test passes or fails (a length off by
    one, a byte short or over, a topic that is a varint). Other envelopes: above."""
    length = max(0, size - 4 + length_off)
    rest = data.draw(
        st.binary(min_size=max(0, size - 4 + rest_off), max_size=max(0, size - 4 + rest_off))
    )
    frame = bytes([size, 0x10, topic, 0x1A, length]) + rest
    general = bytes([size | 0x80, 0x00]) + frame[1:]
    assert _outcome(frame) == _outcome(general)
    if 4 <= size < len(frame) and length == size - 4 and topic < 0x80:
        assert _envelope(frame) == (topic, 5, size + 1)


@pytest.mark.parametrize("action", [RpcAction.REQUEST, RpcAction.ACCEPT, RpcAction.RESPONSE])
def test_rpc_messages_of_every_short_size_round_trip(action: int) -> None:
    """Frames of 5 to 127 bytes (the short path) and just past it, as clients send them."""
    for size in range(0, 140):
        msg = Message(Topic.RPC, action, name="n", correlation_id="1", data="x" * size)
        frame = encode(msg)
        assert decode(frame) == msg
        assert decode(frame + b"\x00") == msg


def test_a_long_message_in_the_plain_envelope_decodes() -> None:
    msg = Message(Topic.RECORD, 6, name="r", data='"' + "x" * 300 + '"', path="a.b", version=7)
    frame = encode(msg)
    assert frame[4] == 0x1A and frame[5] >= 0x80  # two-byte lengths of the frame and message
    assert decode(frame) == msg


@given(
    action=st.integers(0, 200),
    name=st.text(max_size=200),
    version=st.integers(-(2**31), 2**31 - 1),
    data=st.none() | st.text(max_size=300),
    path=st.none() | st.text(max_size=20),
)
def test_encode_change_writes_what_encode_writes(
    action: int, name: str, version: int, data: str | None, path: str | None
) -> None:
    msg = Message(Topic.RECORD, action, name=name, version=version, data=data, path=path)
    assert encode_change(action, name, version, data, path) == encode(msg)


def test_encode_change_writes_a_lone_surrogate_as_encode_does() -> None:
    msg = Message(Topic.RECORD, 6, name="r", version=2, data='"\ud800"', path="a\udc00")
    assert encode_change(6, "r", 2, '"\ud800"', "a\udc00") == encode(msg)


def test_unknown_map_entry_fields_are_skipped() -> None:
    entry = bytes.fromhex("0a016b") + bytes.fromhex("1805") + bytes.fromhex("1007")
    payload = bytes.fromhex("0808") + bytes([0x72, len(entry)]) + entry
    assert decode(_frame(Topic.RECORD, payload)).versions == {"k": 7}


@pytest.mark.parametrize("hex_frame", list(GOLDEN))
def test_every_truncation_is_a_parse_error(hex_frame: str) -> None:
    frame = bytes.fromhex(hex_frame)
    for end in range(len(frame)):
        with pytest.raises(MessageParseError):
            decode(frame[:end])


@pytest.mark.parametrize(
    "payload",
    [
        bytes.fromhex("080232"),  # tag without its length
        bytes.fromhex("08023205616263"),  # string longer than the payload
        bytes.fromhex("08"),  # tag without its varint
        bytes.fromhex("0802f9010102"),  # fixed64 cut short
        bytes.fromhex("0802fd0101"),  # fixed32 cut short
        bytes.fromhex("08020b"),  # wire type 3 (group), not supported by proto3
        bytes.fromhex("08ffffffffffffffffffffff01"),  # varint longer than 10 bytes
        bytes.fromhex("080872030a0561"),  # map entry: key longer than the entry
        bytes.fromhex("0808720210"),  # map entry: value cut short
    ],
)
def test_malformed_payloads_are_parse_errors(payload: bytes) -> None:
    topic = Topic.RECORD if payload.startswith(b"\x08\x08") else Topic.EVENT
    with pytest.raises(MessageParseError):
        decode(_frame(topic, payload))


def test_invalid_utf8_is_a_parse_error() -> None:
    with pytest.raises(MessageParseError, match="UTF-8"):
        decode(_frame(Topic.EVENT, bytes.fromhex("08023202fffe")))


def test_bytes_after_the_delimited_message_are_ignored_as_protobuf_js_does() -> None:
    assert decode(encode(Message(Topic.EVENT, 2)) + b"\xff\x00") == Message(Topic.EVENT, 2)


@pytest.mark.parametrize("topic", [0, 8, 9, 10, 11, 50, 100, -3])
def test_unknown_topics_carry_their_number(topic: int) -> None:
    payload = bytes.fromhex("0802")
    body = b"\x10" + _varint_bytes(topic) + bytes([0x1A, len(payload)]) + payload
    with pytest.raises(UnknownTopic) as info:
        decode(bytes([len(body)]) + body)
    assert info.value.topic == topic


def _varint_bytes(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@pytest.mark.parametrize(("topic", "action"), [(Topic.EVENT, 99), (Topic.RPC, 3), (Topic.AUTH, 0)])
def test_unknown_actions_carry_topic_and_action(topic: int, action: int) -> None:
    with pytest.raises(UnknownAction) as info:
        decode(encode(Message(topic, action, name="x")))
    assert (info.value.topic, info.value.action) == (topic, action)


def test_the_size_limit_counts_the_whole_frame() -> None:
    frame = encode(Message(Topic.EVENT, 2, name="x", data="y" * 100))
    assert decode(frame, max_size=len(frame)).data == "y" * 100
    with pytest.raises(MessageTooLarge) as info:
        decode(frame, max_size=len(frame) - 1)
    assert (info.value.size, info.value.limit) == (len(frame), len(frame) - 1)


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(st.sampled_from(list(SCHEMAS)), st.binary(max_size=200))
def test_random_payloads_raise_only_protocol_errors(topic: int, payload: bytes) -> None:
    body = b"\x10" + bytes([topic]) + b"\x1a" + _varint_bytes(len(payload)) + payload
    with contextlib.suppress(ProtocolError):
        decode(_varint_bytes(len(body)) + body)


_names = st.text(max_size=20)
_ints = st.integers(-(2**31), 2**31 - 1)


@given(
    name=st.none() | _names,
    names=st.lists(_names, max_size=4),
    data=st.none() | _names,
    version=st.none() | _ints,
    versions=st.none() | st.dictionaries(_names, _ints, min_size=1, max_size=4),
    is_ack=st.none() | st.booleans(),
)
def test_random_records_round_trip(
    name: str | None,
    names: list[str],
    data: str | None,
    version: int | None,
    versions: dict[str, int] | None,
    is_ack: bool | None,
) -> None:
    msg = Message(
        Topic.RECORD,
        18,
        name=name,
        names=names,
        data=data,
        version=version,
        versions=versions,
        is_ack=is_ack,
    )
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("action", [7, 18, 19, 20, 24, 34])  # CREATEANDPATCH .. UPDATE, ERASE
def test_encode_change_at_every_length_boundary_writes_what_encode_writes(action: int) -> None:
    """Field and frame lengths around each varint and small-head boundary (0x7B/0x7C: the
    frame's one-byte heads; 0x80 and 0x4000: a second and third length byte), counted in
    UTF-8 bytes (a two-byte character sits on the boundary), with and without a path."""
    sizes = [*range(0x70, 0x90), *range(0x3FF0, 0x4010)]
    for size in sizes:
        for data in ("x" * size, "é" * (size // 2) + "x" * (size % 2), None):
            for name, path in (("r", None), ("ü" * (size // 2), "a.b"), ("n", "p" * size)):
                for version in (-1, 0, 127, 128, 2**31 - 1):
                    msg = Message(
                        Topic.RECORD, action, name=name, version=version, data=data, path=path
                    )
                    assert encode_change(action, name, version, data, path) == encode(msg), (
                        size,
                        name[:3],
                        version,
                    )


def _fields(msg: Message) -> tuple[int, str | None, str | None, str | None, bytes]:
    """What ``decode_rpc`` gives for a frame of ``msg``."""
    data = b"" if msg.data is None else encode_field(2, msg.data)
    return msg.action, msg.name, msg.correlation_id, msg.data, data


@pytest.mark.parametrize("action", [RpcAction.REQUEST, RpcAction.ACCEPT, RpcAction.RESPONSE])
def test_decode_rpc_reads_what_decode_reads_at_every_short_size(action: int) -> None:
    """Frames as protobuf.js writes them, up to 128 bytes; None from 129 on (decode's)."""
    for size in range(0, 130):
        for data in ("x" * size, "é" * (size // 2), None):
            msg = Message(Topic.RPC, action, name="n/ü", correlation_id=str(size), data=data)
            frame = encode(msg)
            assert decode(frame) == msg
            expected = _fields(msg) if len(frame) <= 0x80 else None
            assert decode_rpc(frame) == expected, frame


@pytest.mark.parametrize(
    "msg",
    [
        Message(Topic.RPC, RpcAction.REJECT, name="f", correlation_id="1"),
        Message(Topic.RPC, RpcAction.REQUEST_ERROR, name="f", correlation_id="1", data='"x"'),
        Message(Topic.RPC, RpcAction.PROVIDE, names=["f"], correlation_id="1"),
        Message(Topic.RPC, RpcAction.REQUEST, name="f", data="1"),  # no correlation id
        Message(Topic.RPC, RpcAction.REQUEST, correlation_id="1", data="1"),  # no name
        Message(Topic.RPC, RpcAction.RESPONSE, name="f", correlation_id="1", is_error=False),
        Message(Topic.RPC, RpcAction.REQUEST, name="f", correlation_id="1", requestor_name="u"),
        Message(Topic.EVENT, 2, name="f", correlation_id="1", data="1"),
    ],
)
def test_decode_rpc_leaves_every_other_message_to_decode(msg: Message) -> None:
    assert decode_rpc(encode(msg)) is None


def test_decode_rpc_leaves_bad_text_and_extra_bytes_to_decode() -> None:
    frame = encode(Message(Topic.RPC, RpcAction.REQUEST, name="f", correlation_id="1", data="1"))
    assert decode_rpc(frame) is not None
    assert decode_rpc(frame + b"\x00") is None  # ignored by decode, read by the general path
    assert decode_rpc(bytes([frame[0] - 1]) + frame[1:]) is None  # its message runs past it
    assert decode_rpc(frame.replace(b"f", b"\xff")) is None  # not UTF-8: decode says so
    surrogate = frame.replace(b":\x01f", b":\x03\xed\xa0\x80")  # a lone surrogate, as written
    surrogate = bytes([surrogate[0] + 2, *surrogate[1:4], surrogate[4] + 2, *surrogate[5:]])
    assert decode_rpc(surrogate) is None
    with pytest.raises(LoneSurrogateText):
        decode(surrogate)


@given(st.data())
def test_decode_rpc_agrees_with_decode_on_any_damage(data: st.DataObject) -> None:
    """Whatever a frame of the shape ``decode_rpc`` reads turns into (bytes changed, cut,
    added), it reads it as ``decode`` does, or leaves it to ``decode``."""
    msg = Message(
        Topic.RPC,
        data.draw(st.sampled_from([RpcAction.REQUEST, RpcAction.ACCEPT, RpcAction.RESPONSE])),
        name=data.draw(st.text(max_size=12)),
        correlation_id=data.draw(st.text(max_size=12)),
        data=data.draw(st.none() | st.text(max_size=40)),
    )
    frame = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(0, len(frame)))
        byte = data.draw(st.integers(0, 0xFF))
        change = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if change == "insert":
            frame.insert(where, byte)
        elif where < len(frame):
            if change == "set":
                frame[where] = byte
            else:
                del frame[where]
    fields = decode_rpc(bytes(frame))
    if fields is not None:
        assert fields == _fields(decode(bytes(frame)))
