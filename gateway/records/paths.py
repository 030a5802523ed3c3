"""JSON paths as the deepstream client writes them (``a.b[2].c``): parse, get, set, erase.

The official JS client applies a PATCH or ERASE to its own copy with the same path syntax, so
these functions reproduce its semantics wherever a path is accepted; where the client's parser
would quietly do something odd (empty segments, ``a[x]``, negative indices, keys that touch an
object's prototype), the path is rejected with ``InvalidData`` instead.

* A path is dot-separated parts; each part, trimmed of whitespace as the client trims it, is a
  non-empty key followed by zero or more ``[n]`` indices (``n`` ASCII digits).
* A key on an array must be a canonical index (``"0"``, ``"12"``), as in JavaScript; an index on
  an object is the key ``str(n)``.
* ``set_path`` creates missing or non-container intermediates: an array when the next token is
  an index (pre-filled with ``null`` up to it, as the client does), else an object. Arrays grow
  with ``null`` padding (a JavaScript hole serialises as ``null``).
* ``erase_path`` removes an object key; on an array it leaves ``null`` in the slot, which is
  what ``delete arr[i]`` serialises to. Like the client, it still creates intermediates.
* Copy-on-write: only the containers along the path are copied; the input is never mutated, so
  a previous record snapshot stays intact and shares every untouched subtree. Several paths
  applied as one write (PATCH_MULTI) share an ``owned`` map: a container copied (or created)
  by an earlier path of the same write is changed in place, so each is copied once per write,
  not once per path (which made PATCH_MULTI quadratic).
* Bounded work: a path has at most ``max_depth`` tokens and its indices add up to at most
  ``max_index`` (each may pad an array with that many ``null``s). ``patch`` also estimates how
  many bytes of JSON the write adds, from what it padded and replaced, without serialising.
"""

from __future__ import annotations

import re
from typing import Any

from ..exceptions import InvalidData, LimitExceeded

__all__ = [
    "FORBIDDEN_KEYS",
    "MAX_INDEX_GAP",
    "MAX_TOKENS",
    "Owned",
    "Token",
    "erase_path",
    "get_path",
    "parse_path",
    "patch",
    "set_path",
]

Token = str | int

FORBIDDEN_KEYS = frozenset({"__proto__", "constructor", "prototype"})
"""Keys that would reach an object's prototype in a JavaScript peer applying the path."""
MAX_TOKENS = 256
"""Default path depth limit (``limits.max_path_depth``): keeps the recursion bounded."""
MAX_INDEX_GAP = 100_000
"""Default bound (``limits.max_array_index``) of the indices of one path, added up."""

Owned = dict[int, Any]
"""Containers one write made itself (by ``id``), which later paths of it may change in place."""

# What JavaScript's String.prototype.trim removes (str.strip alone misses U+FEFF).
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_PART = re.compile(r"([^\[\]]+)((?:\[[0-9]{1,9}\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")
_CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def parse_path(
    path: str | None, *, max_depth: int = MAX_TOKENS, max_index: int = MAX_INDEX_GAP
) -> tuple[Token, ...]:
    """Tokens of ``path``: ``str`` keys and ``int`` indices. Raises ``InvalidData`` (and
    ``LimitExceeded`` past ``max_depth`` tokens or indices adding up past ``max_index``)."""
    if not path:
        raise InvalidData("path is missing or empty")
    if path.count(".") + path.count("[") >= max_depth:
        raise LimitExceeded("limits.max_path_depth", f"path is deeper than {max_depth}")
    tokens: list[Token] = []
    for raw in path.split("."):
        part = raw.strip(_JS_SPACE)
        match = _PART.fullmatch(part)
        if match is None:
            raise InvalidData(f"malformed path {path!r}")
        key = match.group(1)
        if key in FORBIDDEN_KEYS:
            raise InvalidData(f"path {path!r} touches {key!r}")
        tokens.append(key)
        tokens.extend(int(index) for index in _INDEX.findall(match.group(2)))
    if sum(token for token in tokens if type(token) is int) > max_index:
        raise LimitExceeded(
            "limits.max_array_index", f"the indices of path {path[:100]!r} add up past {max_index}"
        )
    return tuple(tokens)


def get_path(data: Any, tokens: tuple[Token, ...], default: Any = None) -> Any:
    """The value at ``tokens``, or ``default`` if the path does not resolve."""
    node = data
    for token in tokens:
        if isinstance(node, dict):
            node = node.get(token if isinstance(token, str) else str(token), _MISSING)
        elif isinstance(node, list):
            index = _as_index(token)
            node = node[index] if index is not None and index < len(node) else _MISSING
        else:
            return default
        if node is _MISSING:
            return default
    return node


def set_path(data: dict[str, Any] | list[Any], tokens: tuple[Token, ...], value: Any) -> Any:
    """A copy of ``data`` with ``value`` at ``tokens``; ``data`` itself is left untouched."""
    return _write(data, tokens, 0, value, False, {}, _Growth())


def erase_path(data: dict[str, Any] | list[Any], tokens: tuple[Token, ...]) -> Any:
    """A copy of ``data`` without the value at ``tokens``; ``data`` itself is left untouched."""
    return _write(data, tokens, 0, None, True, {}, _Growth())


def patch(
    data: dict[str, Any] | list[Any],
    tokens: tuple[Token, ...],
    value: Any,
    *,
    erase: bool,
    owned: Owned | None = None,
) -> tuple[Any, int]:
    """``set_path`` (or with ``erase``, ``erase_path``) sharing ``owned`` with the other paths
    of one write (None: the write has no other path); also the bytes of JSON it adds, besides
    ``value``'s own text (padding, a new key), less the scalar it replaced or erased. An
    estimate: it never serialises anything."""
    if len(tokens) == 1 and type(data) is dict and (owned is None or id(data) not in owned):
        # One key of an object, most writes: ``_write``'s last step, without its walk.
        copy = dict(data)
        if owned is not None:
            owned[id(copy)] = copy
        return copy, _set_key(copy, tokens[0], value, erase)
    growth = _Growth()
    written = _write(data, tokens, 0, value, erase, {} if owned is None else owned, growth)
    return written, growth.bytes


class _Growth:
    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


def _scalar_size(value: Any) -> int:
    """JSON length of a scalar (strings without their escapes); 0 for a container (unknown)."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is int or kind is float:
        return len(repr(value))
    if value is None or kind is bool:
        return 4 if value is None or value else 5
    return 0


_MISSING = object()


def _as_index(token: Token) -> int | None:
    if isinstance(token, int):
        return token
    return int(token) if _CANONICAL_INDEX.fullmatch(token) else None


def _container_for(token: Token, owned: Owned, growth: _Growth) -> dict[str, Any] | list[Any]:
    new: dict[str, Any] | list[Any]
    if isinstance(token, int):
        # The client pre-fills a new array up to the index (visible when erasing through it).
        new = [None] * token
        growth.bytes += 5 * token + 2
    else:
        new = {}
        growth.bytes += 2
    owned[id(new)] = new
    return new


def _set_key(copy: dict[str, Any], token: Token, value: Any, erase: bool) -> int:
    """Set (or with ``erase``, remove) ``token``'s key in ``copy``, an object this write owns;
    the bytes of JSON that adds besides ``value``'s text, less the scalar it replaced."""
    key = token if type(token) is str else str(token)
    old = copy.pop(key, _MISSING) if erase else copy.get(key, _MISSING)
    if old is _MISSING:
        if erase:
            return 0
        copy[key] = value
        return len(key) + 4
    if erase:  # its key, colon and quotes, and a comma unless it was the only key
        return -(_scalar_size(old) + len(key) + (4 if copy else 3))
    copy[key] = value
    return -_scalar_size(old)


def _write(
    node: Any,
    tokens: tuple[Token, ...],
    i: int,
    value: Any,
    erase: bool,
    owned: Owned,
    growth: _Growth,
) -> Any:
    token = tokens[i]
    last = i == len(tokens) - 1
    if isinstance(node, dict):
        key = token if isinstance(token, str) else str(token)
        if id(node) in owned:
            copy = node
        else:
            copy = dict(node)
            owned[id(copy)] = copy
        if last:
            growth.bytes += _set_key(copy, key, value, erase)
            return copy
        child = node.get(key)
        if not isinstance(child, dict | list):
            if key not in node:
                growth.bytes += len(key) + 4
            child = _container_for(tokens[i + 1], owned, growth)
        copy[key] = _write(child, tokens, i + 1, value, erase, owned, growth)
        return copy
    index = _as_index(token)
    if index is None:
        raise InvalidData(f"key {token!r} used on an array")
    if id(node) in owned:
        items = node
    else:
        items = list(node)
        owned[id(items)] = items
    if last and erase:
        if index < len(items):
            growth.bytes -= _scalar_size(items[index]) - 4
            items[index] = None
        return items
    if index >= len(items):
        growth.bytes += 5 * (index + 1 - len(items))
        items.extend([None] * (index + 1 - len(items)))
    if last:
        growth.bytes -= _scalar_size(items[index])
        items[index] = value
        return items
    child = items[index]
    if not isinstance(child, dict | list):
        child = _container_for(tokens[i + 1], owned, growth)
    items[index] = _write(child, tokens, i + 1, value, erase, owned, growth)
    return items
