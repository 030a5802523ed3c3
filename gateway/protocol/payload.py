"""JSON payloads: the one place where the server turns message ``data`` into values and back.

Every JSON text a client sends that the server parses (record data, PATCH and PATCH_MULTI
values, AUTH data) goes through :func:`loads`; what it forwards to other clients unparsed
(event and RPC data) through :func:`check`; every value the server writes as JSON text goes
through :func:`dumps`. Both hold one rule: **only what any peer and every backend can read
back is accepted, and nothing else is ever sent**.

:func:`loads` refuses, with :class:`~gateway.exceptions.InvalidJSON` (whose ``reason`` names the
rule, counted in ``REFUSED`` for ``/metrics``):

* ``invalid``: not JSON text.
* ``non_finite_number``: ``NaN``, ``Infinity``, ``-Infinity`` and numbers beyond the range of a
  double (``1e400``). Python would read them as ``inf``/``nan`` and write ``Infinity`` back,
  which is not JSON: an official client reading it dies on a SyntaxError. (The reference server
  turns them into ``null``, silently changing the data; refusing tells the writer.) Integers stay
  exact at any size Python reads (up to 4300 digits).
* ``lone_surrogate``: a ``\\ud800``-style escape that is not half of a pair (what JavaScript's
  ``JSON.stringify`` writes for a string cut in the middle of an emoji). Such a string has no
  UTF-8 form, so no backend can store it faithfully (SQLite's driver raises, PostgreSQL refuses
  the row, others would replace it), and the protobuf string fields cannot carry it either.
  Surrogate *pairs* are ordinary characters and pass.
* ``too_deep``: nesting deeper than ``max_depth`` containers (``server.max_json_depth``), counted
  from the record's root, so a PATCH counts its path too. Deep nesting past the encoder's
  recursion limit would make a record unreadable.

:func:`refuse_nul` refuses, with reason ``unstorable``, a record write that would put U+0000 in
the record (in data, a key, a path or the name): called only when the configured connector
declares it cannot hold that (``connectors.base.NUL``, PostgreSQL's JSONB), so the writer is
answered at once rather than the write being accepted, broadcast and undone at flush time.

:func:`dumps` raises :class:`~gateway.exceptions.UnencodableData` instead of writing non-JSON;
data only gets there from outside (a row written behind the server's back).

Cost on the hot path: the C decoder, a float hook (only numbers with a fraction or exponent
reach it, and only in text long enough or with an exponent, where one could be out of range),
and two substring counts; the depth and surrogate walks run only when those counts
say they might be needed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Final

from ..exceptions import InvalidJSON, UnencodableData

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_DEPTH_CEILING",
    "REASONS",
    "REFUSED",
    "check",
    "depth",
    "dumps",
    "loads",
    "refuse",
    "refuse_nul",
]

DEFAULT_MAX_DEPTH: Final = 100
"""``server.max_json_depth`` unless configured: far beyond any sane document."""
MAX_DEPTH_CEILING: Final = 500
"""The highest ``max_depth`` allowed: well inside Python's recursion limit (1000), which the
JSON encoder and decoder of every driver run under."""

REASONS: Final = (
    "invalid",
    "non_finite_number",
    "lone_surrogate",
    "too_deep",
    "unstorable",
    "unencodable",
)
"""Every ``reason`` counted in ``REFUSED``; ``unencodable`` counts :func:`dumps` failures."""

REFUSED: Final[Counter[str]] = Counter()
"""Process-wide count of refused payloads by reason (``/metrics``)."""

_INFINITIES: Final = (float("inf"), float("-inf"))


class _NonFinite(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if value in _INFINITIES:
        raise _NonFinite(text)
    return value


def _no_constant(text: str) -> Any:
    raise _NonFinite(text)


_DECODER: Final = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)
_SCAN: Final = _DECODER.scan_once  # type: ignore[attr-defined]  # (the C scanner; no stub)
_SCAN_FINITE: Final = json.JSONDecoder(parse_constant=_no_constant).scan_once  # type: ignore[attr-defined]
"""The scanner without the float hook, for text whose numbers cannot pass a double's range:
one needs an exponent or over 308 digits for that."""
_FINITE_LENGTH: Final = 309
_SPACE: Final = " \t\n\r"


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def refuse(reason: str, detail: str) -> InvalidJSON:
    """The error for ``reason``, counted."""
    REFUSED[reason] += 1
    return InvalidJSON(reason, detail)


def loads(text: str | None, *, max_depth: int, at_depth: int = 0) -> Any:
    """The value of JSON ``text``, which sits ``at_depth`` containers below a record's root.

    Raises ``InvalidJSON`` (see the module rules); the message never echoes the text.
    """
    if text is None:
        raise refuse("invalid", "data is missing")
    # The C scanner alone: the decoder's two whitespace regexes run only for text with
    # whitespace around it or that is no JSON (to parse it, or to raise its error), and the
    # float hook (a Python call per number) only where a number could be infinite, which
    # needs an exponent or over 308 digits.
    finite = len(text) < _FINITE_LENGTH and "e" not in text and "E" not in text
    try:
        try:
            value, end = (_SCAN_FINITE if finite else _SCAN)(text, 0)
        except StopIteration:  # leading whitespace, or nothing JSON: the decoder says which
            value, end = _DECODER.decode(text), len(text)
        if end != len(text) and text[end:].strip(_SPACE):
            _DECODER.decode(text)  # raises "Extra data"
    except _NonFinite as exc:
        raise refuse("non_finite_number", f"{str(exc)[:20]} is not a finite number") from None
    except RecursionError:
        raise refuse("too_deep", f"data is nested deeper than {max_depth}") from None
    except ValueError as exc:
        raise refuse("invalid", f"data is not valid JSON: {exc}") from None
    # Each container opens with a character of its own, so the length, then the count of
    # openers, bound the depth: the walk runs only if neither settles the question.
    if at_depth + len(text) > max_depth:
        openers = text.count("{") + text.count("[")
        if at_depth + openers > max_depth and at_depth + depth(value) > max_depth:
            raise refuse("too_deep", f"data is nested deeper than {max_depth}")
    # An escape is the only way a surrogate gets into decoded text.
    if "\\u" in text and ("\\ud" in text or "\\uD" in text):
        try:
            _ENCODER.encode(value).encode()
        except UnicodeEncodeError:
            raise refuse("lone_surrogate", "data holds a lone UTF-16 surrogate") from None
    return value


# ``\u0000`` is an escape only after an even run of backslashes (``\\u0000`` is a backslash
# and the text "u0000"). Raw U+0000 cannot be in JSON text that parses: strings refuse control
# characters, and it is no JSON whitespace.
_NUL_ESCAPE: Final = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def refuse_nul(data: str | None, *raw: str | None) -> None:
    """Raise ``InvalidJSON`` (``unstorable``) if JSON text ``data`` holds an escaped U+0000, or
    one of the ``raw`` texts (a name, a path: not JSON) holds the character.

    Cost: one substring test per text; the escape pattern runs only when the test hits.
    """
    if data is not None and "\\u0000" in data and _NUL_ESCAPE.search(data):
        raise refuse("unstorable", "record data holds U+0000, which the storage cannot hold")
    for text in raw:
        if text is not None and "\x00" in text:
            raise refuse(
                "unstorable", "record name or path holds U+0000, which the storage cannot hold"
            )


def check(text: str | None, *, max_depth: int) -> None:
    """Refuse ``text`` as ``loads`` would; absent data passes. For data forwarded to other
    clients as sent (events, RPC): the official client parses every ``data`` with a bare
    ``JSON.parse``, so one ``NaN`` or truncated text would kill every Node subscriber."""
    if text is not None:
        loads(text, max_depth=max_depth)


def depth(value: Any) -> int:
    """Containers nested in ``value``: 0 for a scalar, 1 for ``{}`` or ``[1]``, ..."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if type(node) is dict:
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        if level > deepest:
            deepest = level
        stack.extend((child, level + 1) for child in children if type(child) in (dict, list))
    return deepest


def dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept as is). Raises ``UnencodableData`` rather than write
    anything that is not JSON, or that has no UTF-8 form."""
    try:
        text = _ENCODER.encode(value)
        if not text.isascii():
            text.encode()  # a lone surrogate would fail later, in the codec, mid-send
    except (ValueError, RecursionError, UnicodeEncodeError, TypeError) as exc:
        REFUSED["unencodable"] += 1
        raise UnencodableData(f"data cannot be written as JSON: {type(exc).__name__}") from exc
    return text
