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
  a previous record snapshot stays intact and shares every untouched subtree.
"""

from __future__ import annotations

import re
from typing import Any

from ..exceptions import InvalidData

__all__ = [
    "FORBIDDEN_KEYS",
    "MAX_INDEX_GAP",
    "MAX_TOKENS",
    "Token",
    "erase_path",
    "get_path",
    "parse_path",
    "set_path",
]

Token = str | int

FORBIDDEN_KEYS = frozenset({"__proto__", "constructor", "prototype"})
"""Keys that would reach an object's prototype in a JavaScript peer applying the path."""
MAX_TOKENS = 256
"""Path depth limit: keeps the recursion bounded, far beyond any sane document."""
MAX_INDEX_GAP = 100_000
"""How far past an array's end an index may reach (the padding would be ``null``s)."""

# What JavaScript's String.prototype.trim removes (str.strip alone misses U+FEFF).
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_PART = re.compile(r"([^\[\]]+)((?:\[[0-9]{1,9}\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")
_CANONICAL_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def parse_path(path: str | None) -> tuple[Token, ...]:
    """Tokens of ``path``: ``str`` keys and ``int`` indices. Raises ``InvalidData``."""
    if not path:
        raise InvalidData("path is missing or empty")
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
    if len(tokens) > MAX_TOKENS:
        raise InvalidData(f"path is deeper than {MAX_TOKENS}")
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
    return _write(data, tokens, 0, value, erase=False)


def erase_path(data: dict[str, Any] | list[Any], tokens: tuple[Token, ...]) -> Any:
    """A copy of ``data`` without the value at ``tokens``; ``data`` itself is left untouched."""
    return _write(data, tokens, 0, None, erase=True)


_MISSING = object()


def _as_index(token: Token) -> int | None:
    if isinstance(token, int):
        return token
    return int(token) if _CANONICAL_INDEX.fullmatch(token) else None


def _container_for(token: Token) -> dict[str, Any] | list[Any]:
    if not isinstance(token, int):
        return {}
    if token > MAX_INDEX_GAP:
        raise InvalidData(f"index {token} is too far past the end of the array")
    # The client pre-fills a new array up to the index (visible when erasing through it).
    return [None] * token


def _write(node: Any, tokens: tuple[Token, ...], i: int, value: Any, *, erase: bool) -> Any:
    token = tokens[i]
    last = i == len(tokens) - 1
    if isinstance(node, dict):
        key = token if isinstance(token, str) else str(token)
        copy = dict(node)
        if last:
            if erase:
                copy.pop(key, None)
            else:
                copy[key] = value
            return copy
        child = node.get(key)
        if not isinstance(child, dict | list):
            child = _container_for(tokens[i + 1])
        copy[key] = _write(child, tokens, i + 1, value, erase=erase)
        return copy
    index = _as_index(token)
    if index is None:
        raise InvalidData(f"key {token!r} used on an array")
    if index > len(node) + MAX_INDEX_GAP:
        raise InvalidData(f"index {index} is too far past the end of the array")
    items = list(node)
    if last and erase:
        if index < len(items):
            items[index] = None
        return items
    if index >= len(items):
        items.extend([None] * (index + 1 - len(items)))
    if last:
        items[index] = value
        return items
    child = items[index]
    if not isinstance(child, dict | list):
        child = _container_for(tokens[i + 1])
    items[index] = _write(child, tokens, i + 1, value, erase=erase)
    return items
