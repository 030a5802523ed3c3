"""Hypothesis strategies for hostile deepstream input, at two levels.

* ``wire_frames``: protobuf built byte by byte here, independently of ``gateway.protocol.codec``
  (any varint up to 10 bytes, padded varints, fields in any order and repeated, unknown fields of
  every wire type, known numbers with the wrong wire type, invalid UTF-8), each with the outcome
  protobuf's own rules give: the decoded ``Message`` or the error the codec must raise.
* ``messages``: decoded ``Message`` objects of every topic and action with hostile field values
  (names with NUL, very long names, ``__proto__`` paths, int32 extremes, odd and deep JSON, lone
  surrogates escaped in JSON), shaped as clients send them so they reach the topic handlers.

Every family of hostile values that issue 6 reported is drawn, named by its item there (lone
surrogates, 1e400, deep nesting, repeated bulk names, long names and costly listen patterns,
growing paths, deep AUTH JSON), so a regression of any of those fixes fails the fuzz.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from gateway.exceptions import (
    LoneSurrogateText,
    MessageParseError,
    ProtocolError,
    UnknownAction,
    UnknownTopic,
)
from gateway.protocol import Message, Topic
from gateway.protocol.codec import BOOL, INT, MAP, SCHEMAS, STR, STRS
from gateway.protocol.constants import ACTIONS

__all__ = [
    "POOL",
    "WireFrame",
    "auth_data",
    "garbage",
    "json_text",
    "messages",
    "mutations",
    "names",
    "paths",
    "varint",
    "wire_frames",
]


INT32_EXTREMES = [0, 1, -1, 2**31 - 1, -(2**31), 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, -(2**63)]
CLIENT_ACTIONS = {
    Topic.CONNECTION: [2, 2, 2, 5, 8],
    Topic.AUTH: [2],
    Topic.EVENT: [2, 2, 2, 3, 3, 4, 5, 6, 7, 8],
    Topic.RECORD: [
        2,
        3,
        5,
        7,
        9,
        15,
        16,
        17,
        18,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        29,
        30,
        35,
    ],
    Topic.RPC: [2, 2, 4, 5, 6, 7, 8, 8, 9],
    Topic.PRESENCE: [2, 4, 10, 11, 12, 13],
}
"""The actions clients send, per topic (PROTOCOL.md), drawn most of the time."""
ACTION_NUMBERS = {int(t): sorted(int(a) for a in enum) for t, enum in ACTIONS.items()}


# -- raw protobuf ------------------------------------------------------------------------------


def varint(value: int, pad: int = 0) -> bytes:
    """``value`` (taken mod 2**64) as a protobuf varint, padded with up to ``pad`` redundant
    bytes (protobuf accepts non-minimal varints, up to 10 bytes in all)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    pad = min(pad, 10 - len(out))
    if pad > 0:
        out[-1] |= 0x80
        out += b"\x80" * (pad - 1) + b"\x00"
    return bytes(out)


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _tag(number: int, wire: int, pad: int = 0) -> bytes:
    return varint(number << 3 | wire, pad)


def _len_delimited(number: int, payload: bytes, pad: int = 0) -> bytes:
    return _tag(number, 2) + varint(len(payload), pad) + payload


@dataclass
class WireFrame:
    """Bytes on the wire and what decoding them must give."""

    frame: bytes
    expected: Message | type[ProtocolError]
    note: list[str] = field(default_factory=list)


_varint_values = st.one_of(
    st.sampled_from([v & (2**64 - 1) for v in INT32_EXTREMES]),
    st.integers(0, 2**64 - 1),
    st.integers(0, 300),
)
_pads = st.sampled_from([0, 0, 0, 1, 3])

BAD_UTF8 = [
    b"\xed\xa0\x80",  # a lone surrogate, U+D800, as WTF-8/CESU would write it
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xc0\x80",  # overlong NUL
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xff",
    b"\x80",
    b"\xe2\x82",  # cut short
    b"a\xf0\x9f\x98",  # an emoji cut in half
]


BAD = "bad"
LONE = "lone surrogate"


@st.composite
def _string_bytes(draw: st.DrawFn) -> tuple[bytes, str]:
    """(raw bytes of a string field, the str it decodes to), where the str is ``BAD`` for
    bytes that are not UTF-8 and ``LONE`` for a lone surrogate (as protobuf.js writes one)."""
    if draw(st.integers(0, 29)) == 0:
        raw = draw(st.sampled_from(BAD_UTF8))
        prefix = draw(st.sampled_from([b"", b"name/", "ü".encode()]))
        try:
            (prefix + raw).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return prefix + raw, BAD
        return prefix + raw, LONE
    text = draw(names() | json_text())
    return text.encode(), text


@st.composite
def _unknown_field(draw: st.DrawFn, known_wire: dict[int, int]) -> bytes:
    """A field the schema does not know: a free number, or a known number, wrong wire type.

    ``known_wire``: the wire type of each field number the message knows.
    """
    known = st.sampled_from(sorted(known_wire)) if known_wire else st.nothing()
    number = draw(known | st.integers(1, 2**29 - 1))
    wires = [w for w in (0, 1, 2, 5) if known_wire.get(number) != w]
    wire = draw(st.sampled_from(wires))
    if wire == 0:
        return _tag(number, 0) + varint(draw(_varint_values), draw(_pads))
    if wire == 1:
        return _tag(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return _tag(number, 5) + draw(st.binary(min_size=4, max_size=4))
    return _len_delimited(number, draw(st.binary(max_size=40)))


@st.composite
def _map_entry(draw: st.DrawFn) -> tuple[bytes, str, int]:
    """A ``versions`` entry: bytes, its key (or ``BAD``/``LONE``) and its int32 value."""
    key, value, parts = "", 0, []
    for _ in range(draw(st.integers(0, 3))):
        which = draw(st.sampled_from(["key", "value", "unknown"]))
        if which == "key":
            raw, key = draw(_string_bytes())
            parts.append(_len_delimited(1, raw))
        elif which == "value":
            number = draw(_varint_values)
            parts.append(_tag(2, 0) + varint(number, draw(_pads)))
            value = _int32(number)
        else:
            parts.append(draw(_unknown_field({1: 2, 2: 0})))
    return b"".join(parts), key, value


@st.composite
def wire_frames(draw: st.DrawFn, topics: list[int] | None = None) -> WireFrame:
    """A structurally valid protobuf frame of a topic (mostly a served one) and its outcome."""
    served = list(SCHEMAS)
    topic = draw(st.sampled_from(topics or [*served, *served, *served, 0, 8, 10, 100, -1, 2**31]))
    schema = SCHEMAS.get(_int32(topic), ())
    expected = Message(_int32(topic), 0)
    bad_text: set[str] = set()
    parts: list[bytes] = []
    known_wire = {n: 0 if k in (INT, BOOL) else 2 for n, _, k in schema}
    for _ in range(draw(st.integers(0, 12))):
        if not schema or draw(st.integers(0, 5)) == 0:
            parts.append(draw(_unknown_field(known_wire)))
            continue
        number, attr, kind = draw(st.sampled_from(schema[1:]))
        if kind in (INT, BOOL):
            value = draw(_varint_values)
            parts.append(_tag(number, 0) + varint(value, draw(_pads)))
            setattr(expected, attr, _int32(value) if kind == INT else value != 0)
        elif kind in (STR, STRS):
            raw, text = draw(_string_bytes())
            parts.append(_tag(number, 2) + varint(len(raw), draw(_pads)) + raw)
            if text in (BAD, LONE):
                bad_text.add(text)
            elif kind == STR:
                setattr(expected, attr, text)
            else:
                expected.names.append(text)
        else:
            assert kind == MAP
            entry, key, value = draw(_map_entry())
            parts.append(_len_delimited(number, entry))
            if key in (BAD, LONE):
                bad_text.add(BAD)  # map keys are read strictly: a lone surrogate is bad UTF-8
            if expected.versions is None:
                expected.versions = {}
            expected.versions[key] = value
    # The action: mostly one the topic knows, placed anywhere, sometimes after a decoy.
    how = draw(st.integers(0, 9))
    if how:
        known = st.sampled_from(ACTION_NUMBERS.get(_int32(topic), [1]))
        action = draw(_varint_values if how == 1 else known)
        at = draw(st.integers(0, len(parts)))
        parts.insert(at, _tag(1, 0) + varint(action, draw(_pads)))
        if how == 2:
            parts.insert(draw(st.integers(0, at)), _tag(1, 0) + varint(draw(_varint_values)))
        expected.action = _int32(action)
    payload = b"".join(parts)
    envelope = [_tag(2, 0) + varint(topic, draw(_pads)), _len_delimited(3, payload, draw(_pads))]
    if draw(st.booleans()):  # a decoy of each, overridden by the later one
        envelope[0:0] = [_tag(2, 0) + varint(draw(_varint_values)), _len_delimited(3, b"\x08")]
    for _ in range(draw(st.integers(0, 2))):
        envelope.insert(draw(st.integers(0, len(envelope))), draw(_unknown_field({2: 0, 3: 2})))
    body = b"".join(envelope)
    trailer = draw(st.sampled_from([b"", b"", b"\x00", b"\xff\xff"]))
    frame = varint(len(body), draw(_pads)) + body + trailer
    outcome: Message | type[ProtocolError]
    if _int32(topic) not in SCHEMAS:
        outcome = UnknownTopic
    elif BAD in bad_text:
        outcome = MessageParseError
    elif expected.action not in ACTION_NUMBERS[_int32(topic)]:
        outcome = UnknownAction
    elif LONE in bad_text:
        outcome = LoneSurrogateText  # carries the message, for a reply that echoes it
    else:
        outcome = expected
    return WireFrame(frame, outcome)


# -- mutated and garbage bytes ------------------------------------------------------------------


def mutations(frame: bytes, rnd: Any, count: int) -> list[bytes]:
    """``count`` variants of ``frame``: every kind of cut, flip, insertion, splice."""
    out: list[bytes] = []
    size = len(frame)
    for _ in range(count):
        kind = rnd.randrange(7)
        i = rnd.randrange(size + 1)
        if kind == 0:
            out.append(frame[:i])  # truncated
        elif kind == 1 and size:
            j = rnd.randrange(size)
            out.append(frame[:j] + bytes([frame[j] ^ (1 << rnd.randrange(8))]) + frame[j + 1 :])
        elif kind == 2:
            out.append(frame[:i] + bytes([rnd.randrange(256)]) + frame[i:])
        elif kind == 3:
            out.append(frame[:i] + frame[i + 1 + rnd.randrange(4) :])  # bytes deleted
        elif kind == 4 and size:
            j = rnd.randrange(size)
            out.append(frame[:j] + bytes([rnd.choice([0x00, 0x7F, 0x80, 0xFF])]) + frame[j + 1 :])
        elif kind == 5:
            out.append(frame[:i] + frame[rnd.randrange(size + 1) :])  # spliced with itself
        else:
            out.append(rnd.randbytes(rnd.randrange(1, 64)))
    return out


garbage = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=1, max_size=8).map(lambda b: b * 64),
    st.sampled_from([b"", b"\x00", b"\xff" * 11, b"\x7f", b"\x80" * 20, b"\x05\x10\x05\x1a\x7f"]),
)


# -- hostile values ----------------------------------------------------------------------------

POOL = ["a", "b", "user/1", "list", "news", "x/y/z", "ünï", "😀", "*", ".*"]
"""Names shared by every connection, so their writes, subscriptions and listens meet."""

SPECIAL_NAMES = [
    "",
    "\x00",
    "a\x00b",
    "__proto__",
    "constructor",
    "prototype",
    "$var",
    "%_EVERYONE_%",
    "a/",
    "/",
    "//",
    "\u202e",
    "\ufeff",
    " ",
    "\n",
    "a" * 2048,
    "ü" * 1024,
    "ü" * 1025,
]
LONG_NAME_CHARS = (2049, 20_000)
"""Name lengths past every name limit (an event name of 400 KB froze the loop for 22 s)."""


@functools.cache
def names() -> st.SearchStrategy[str]:
    options = [
        st.sampled_from(POOL),
        st.sampled_from(POOL),
        st.sampled_from(SPECIAL_NAMES),
        st.text(max_size=30),
        st.text(st.characters(codec="utf-8"), max_size=12),
    ]
    long = st.tuples(st.integers(*LONG_NAME_CHARS), st.sampled_from("xü😀"))
    options.append(long.map(lambda t: t[1] * t[0]))  # issue 6 item 7
    return st.one_of(options)


SIMPLE_PATTERNS = ["a", ".*", "^user/", "news$", "[", "(a", "a{2,1}", "(?=x)", "\\1", "(a)\\1"]
COSTLY_PATTERNS = [".{1000}.{1000}.{1000}.{1000}z", "(a{100}){100}", "((((.*)*)*)*)*x", "[^z]{256}"]


@functools.cache
def patterns() -> st.SearchStrategy[str]:
    """Listen patterns: valid, invalid, and (item 7) costly to match."""
    options = [st.sampled_from(SIMPLE_PATTERNS + POOL), st.text(max_size=20)]
    options.append(st.sampled_from(COSTLY_PATTERNS) | st.just("a" * 257))  # issue 6 item 7
    return st.one_of(options)


GOOD_PATHS = ["a", "a.b", "a.b[2].c", "list[0]", " a . b ", "x[3][1]", "😀", "0", "a[0].a[1]"]
BAD_PATHS = [
    "",
    ".",
    "a..b",
    "[0]",
    "a[-1]",
    "a[x]",
    "a[]",
    "__proto__",
    "a.__proto__.b",
    "constructor",
    "a.prototype",
    "a.constructor.prototype.x",
    "a[9999999999]",
    "a" + ".a" * 300,
    "a" + "[0]" * 300,
    "a\x00b",
]
GROWING_PATHS = ["a[99999999]", "a[100000]", "b[99999]", "c[99999].d[99999]", "x[50000]"]
"""Paths that add up to 100,000 nulls each: repeated, they grew records past every limit."""


@functools.cache
def paths() -> st.SearchStrategy[str]:
    options = [st.sampled_from(GOOD_PATHS), st.sampled_from(BAD_PATHS), st.text(max_size=12)]
    options.append(st.sampled_from(GROWING_PATHS))  # issue 6 item 8
    return st.one_of(options)


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["\x00", "__proto__", "😀", "\u2028"]),
)
json_values = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=8,
)

ODD_JSON = [
    "",
    "{",
    "}",
    "[1,]",
    "{'a':1}",
    "undefined",
    "NaN",
    "Infinity",
    "-Infinity",
    '{"a":NaN}',
    "null",
    "0",
    '""',
    '"x"',
    "-0",
    "1e-400",
    "123456789012345678901234567890",
    "1" + "0" * 5000,  # past Python's int-string limit
    '{"a":1,"a":2}',
    '{"__proto__":{"polluted":true}}',
    '{"constructor":{"prototype":{}}}',
    '{"a":"\\u0000"}',
    '"\\ud83d\\ude00"',  # a proper pair
    "\x00",
    " {} ",
    "{}garbage",
    "[" * 50 + "]" * 50,
    '{"a":' * 50 + "1" + "}" * 50,
]
NON_FINITE = ["1e400", "-1e400", '{"a":1e400}', "[1e309]", '{"a":[-1e999]}']
LONE_SURROGATES = ['{"a":"\\ud800"}', '{"\\udfff":1}', '["\\ud83d"]', '{"a":"x\\ude00y"}']


def _deep(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@functools.cache
def json_text() -> st.SearchStrategy[str]:
    """The ``data`` field: JSON of every shape, strings that are not JSON, and what issue 6
    items 1 (lone surrogates), 3 (1e400) and 4 (nesting around and past the depth limit) are
    about."""
    deep = st.tuples(st.integers(90, 3000), st.sampled_from(["array", "object"]))
    return st.one_of(
        json_values.map(json.dumps),
        json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
        st.dictionaries(st.sampled_from(["a", "b", "name", "n"]), json_values, max_size=4).map(
            json.dumps
        ),
        st.sampled_from(ODD_JSON),
        st.text(max_size=20),
        st.integers(1, 100_000).map(lambda n: json.dumps({"big": "x" * n})),
        st.sampled_from(NON_FINITE),
        st.sampled_from(LONE_SURROGATES),
        deep.map(lambda t: _deep(*t)),
    )


@functools.cache
def auth_data() -> st.SearchStrategy[str]:
    """AUTH REQUEST data: objects (the valid shape), anything else, and (item 12) deep JSON."""
    objects = st.dictionaries(st.sampled_from(["username", "password", "token"]), json_values)
    deep = st.tuples(st.integers(90, 100_000), st.sampled_from(["array", "object"]))
    return st.one_of(
        objects.map(json.dumps),
        objects.map(json.dumps),
        json_text(),
        deep.map(lambda t: '{"a":' + _deep(*t) + "}"),
    )


# -- decoded messages ----------------------------------------------------------------------------

_int32s = st.one_of(
    st.sampled_from([-1, 0, 1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
_small_versions = st.one_of(st.sampled_from([-1, 0, 1, 2]), st.integers(-3, 50))


@functools.cache
def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def messages(
    draw: st.DrawFn,
    topics: list[int] | None = None,
    action: int | None = None,
) -> Message:
    """A message of a served topic (or of ``topics``), every field of its schema maybe set to a
    hostile value, with the fields its action needs present most of the time. The action is
    mostly one clients send, unless given."""
    topic = draw(st.sampled_from(topics or [4, 4, 5, 5, 5, 5, 5, 6, 6, 7, 2, 3, 1]))
    roll = draw(st.integers(0, 19))
    if action is not None:
        pass
    elif roll < 15 and topic in CLIENT_ACTIONS:
        action = draw(st.sampled_from(CLIENT_ACTIONS[topic]))
    elif roll < 18:
        action = draw(st.sampled_from(ACTION_NUMBERS[topic]))
    else:
        action = draw(st.integers(0, 200))
    msg = Message(topic, action)
    value_for = _field_values(listen=_is_listen(topic, action), auth=topic == Topic.AUTH)
    for _, attr, kind in SCHEMAS[topic][1:]:
        strategy = st.booleans() if kind == BOOL else value_for.get(attr, _short_text)
        # Most fields most of the time, so messages get past "field missing" to the handlers.
        if attr == "names":
            setattr(msg, attr, draw(strategy))
        elif draw(st.integers(0, 3)) or attr in ("name", "data"):
            value = draw(_maybe(strategy) if attr in ("name", "data") else strategy)
            setattr(msg, attr, value)
    if msg.versions == {}:
        msg.versions = None  # an empty map is absent on the wire
    if topic == Topic.RECORD and action in (16, 17, 18, 19, 20, 35) and draw(st.booleans()):
        msg.version = -1  # a forced write: it applies whatever the current version
    return msg


_short_text = st.text(max_size=12)


@functools.cache
def _field_values(*, listen: bool, auth: bool) -> dict[str, st.SearchStrategy[Any]]:
    """The value strategy of each message field that has a hostile one."""
    return {
        "name": patterns() if listen else names(),
        "names": _bulk_names(),
        "data": auth_data() if auth else json_text(),
        "correlation_id": st.sampled_from(["1", "c", ""]) | st.text(max_size=8),
        "version": _small_versions | _int32s,
        "versions": st.dictionaries(names(), _int32s, max_size=3),
        "path": paths(),
        "original_action": _int32s,
        "original_topic": st.sampled_from(list(Topic)) | _int32s,
        "subscription": names(),
        "pattern": patterns(),
        "requestor_data": json_text(),
    }


def _is_listen(topic: int, action: int) -> bool:
    return (topic, action) in {(4, 5), (4, 6), (4, 7), (4, 8), (5, 27), (5, 28), (5, 29), (5, 30)}


@functools.cache
def _bulk_names() -> st.SearchStrategy[list[str]]:
    """Bulk names: a few, many, or (item 6, amplification) one name repeated thousands of times."""
    options = [st.lists(names(), max_size=8), st.lists(names(), max_size=8)]
    short = st.sampled_from(POOL) | st.text(max_size=10)
    options.append(st.lists(short, max_size=300))
    repeated = st.tuples(short, st.integers(2, 3000)).map(lambda t: [t[0]] * t[1])
    options.append(repeated)  # issue 6 item 6
    return st.one_of(options)
