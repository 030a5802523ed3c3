"""Dot/bracket paths into JSON data (``a.b[0].c``), with the official client's semantics.

``set_value`` and ``erase`` never mutate their input: they copy only the containers along the
path (shallowly) and share every other subtree, so an unchanged subtree keeps its identity and
change detection can skip it with ``is``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

__all__ = ["erase", "get", "set_value", "tokenize"]

_BRACKETS = re.compile(r"[\[\]]")
_MISSING = object()


def tokenize(path: str) -> list[str | int]:
    """``'a.b[1].c'`` -> ``['a', 'b', 1, 'c']``; empty segments are skipped."""
    tokens: list[str | int] = []
    for part in path.split("."):
        part = part.strip()
        if not part:
            continue
        key, *indexes = _BRACKETS.split(part)
        tokens.append(key)
        for index in indexes:
            if index:
                try:
                    tokens.append(int(index))
                except ValueError:
                    raise ValueError(f"invalid array index {index!r} in path {path!r}") from None
    return tokens


def _child(node: Any, token: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(str(token), _MISSING)
    if isinstance(node, list) and isinstance(token, int) and 0 <= token < len(node):
        return node[token]
    return _MISSING


def get(data: Any, path: str | None) -> Any:
    """The value at ``path`` (the whole of ``data`` for None), or None if it does not exist."""
    if path is None:
        return data
    node = data
    for token in tokenize(path):
        node = _child(node, token)
        if node is _MISSING:
            return None
    return node


def _assign(node: Any, token: str | int, value: Any) -> None:
    if isinstance(node, list) and isinstance(token, int):
        if token >= len(node):
            node.extend([None] * (token + 1 - len(node)))
        node[token] = value
    else:
        node[str(token)] = value


def _copy(node: Any, next_token: str | int) -> Any:
    if isinstance(node, dict):
        return dict(node)
    if isinstance(node, list) and isinstance(next_token, int):
        return list(node)
    # A scalar (or a list addressed by a key) is replaced, as the official client does.
    return [] if isinstance(next_token, int) else {}


def _update(root: Any, tokens: list[str | int], value: Any, remove: bool) -> Any:
    new_root = _copy(root, tokens[0])
    node = new_root
    for token, next_token in itertools.pairwise(tokens):
        child = _copy(_child(node, token), next_token)
        _assign(node, token, child)
        node = child
    last = tokens[-1]
    if not remove:
        _assign(node, last, value)
    elif isinstance(node, dict):
        node.pop(str(last), None)
    elif isinstance(last, int) and 0 <= last < len(node):
        node[last] = None  # JSON has no array holes: the official client sends null there
    return new_root


def set_value(root: Any, path: str | None, value: Any) -> Any:
    """``root`` with ``value`` at ``path`` (``value`` itself for a None path), creating parents."""
    if path is None:
        return value
    tokens = tokenize(path)
    return _update(root, tokens, value, remove=False) if tokens else value


def erase(root: Any, path: str) -> Any:
    """``root`` without the key at ``path``; ``root`` itself if there is no such key."""
    tokens = tokenize(path)
    if not tokens:
        raise ValueError("cannot erase the whole record; use delete")
    node = root
    for token in tokens:
        node = _child(node, token)
        if node is _MISSING:
            return root
    return _update(root, tokens, None, remove=True)
