"""Three-way merge of JSON record data: the ``merge`` conflict policy. Pure functions, no I/O.

``merge(base, ours, theirs)`` combines two lines of change made from a common ``base``:

* A value one side left as it was in ``base`` takes the other side's value (so disjoint changes
  combine, and a side that changed nothing contributes nothing).
* Objects changed on both sides merge key by key, recursively. A key added, changed or removed
  on one side only follows that side.
* Anything else changed on both sides to different values is a clash, and **ours wins**:
  the gateway's value (what its clients wrote and were acknowledged) is kept. Clashes include a
  key removed on one side and changed on the other, and a change of type.
* Arrays and scalars are atomic: two different changes to one array clash as a whole (element
  positions carry no identity to merge by); two identical changes are simply that value.
* A missing ``base`` (nothing known to be stored before) counts as an empty object when both
  sides are objects, else as a value equal to neither side.

Equality is JSON equality: ``true`` differs from ``1``; ``1`` equals ``1.0``. Inputs are never
mutated; the result shares no mutable containers with them.
"""

from __future__ import annotations

import copy
from typing import Any, Final

__all__ = ["json_equal", "keeps", "merge"]

_MISSING: Final = object()


def merge(base: Any, ours: Any, theirs: Any) -> Any:
    """The three-way merge of ``ours`` and ``theirs`` from ``base`` (see the module rules)."""
    if base is None and isinstance(ours, dict) and isinstance(theirs, dict):
        base = {}
    return copy.deepcopy(_merge(_MISSING if base is None else base, ours, theirs))


def keeps(base: Any, ours: Any, result: Any) -> bool:
    """Whether ``result`` holds every change ``ours`` made to ``base``: each value ours changed
    (at any depth; arrays and scalars as whole values) has ours' value in ``result``, each key
    ours removed is absent. What ours left as in ``base`` may be anything.

    It is ``merge(base, ours, result) == result``: merging ours into a result that already holds
    its changes changes nothing, while a change of ours the result lacks is a clash ours wins.
    """
    if base is None and isinstance(ours, dict) and isinstance(result, dict):
        base = {}
    return json_equal(_merge(_MISSING if base is None else base, ours, result), result)


def _merge(base: Any, ours: Any, theirs: Any) -> Any:
    if json_equal(ours, theirs) or json_equal(theirs, base):
        return ours
    if json_equal(ours, base):
        return theirs
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return _merge_objects(base if isinstance(base, dict) else {}, ours, theirs)
    return ours  # a clash: ours wins


def _merge_objects(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    # Ours' key order first, then keys only theirs has: stable and readable for clients.
    for key in [*ours, *(k for k in theirs if k not in ours)]:
        value = _merge(base.get(key, _MISSING), ours.get(key, _MISSING), theirs.get(key, _MISSING))
        if value is not _MISSING:
            result[key] = value
    return result


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: like ``==`` but booleans never equal numbers."""
    if a is b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    if isinstance(b, dict | list):
        return False
    return bool(a == b)
