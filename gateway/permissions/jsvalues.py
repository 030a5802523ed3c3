"""JavaScript's value semantics over JSON values, as Valve rules need them.

Values are what a JSON decoder yields (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``) plus :data:`UNDEFINED`. Every function here is total over them: a JavaScript
``TypeError`` (a property of ``null``, a method on a number) is a :class:`RuleError`, never a
Python exception of another kind. Nothing reaches a Python attribute of a value: property access
is dictionary lookup, list or string indexing, or ``length``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import re2

__all__ = [
    "MAX_REGEX_LENGTH",
    "MAX_STRING_RESULT",
    "METHODS",
    "UNDEFINED",
    "Regex",
    "RuleError",
    "add",
    "arith",
    "call_method",
    "get",
    "js_equal",
    "js_string",
    "less",
    "negate",
    "regex",
    "strict_equal",
    "to_number",
    "truthy",
    "typeof",
]

MAX_REGEX_LENGTH: Final = 1024
MAX_STRING_RESULT: Final = 1 << 20
"""Longest string a rule may build by concatenation (a rule is not a way to allocate memory)."""

_EXACT: Final = 2**53
"""Integers up to this are exact doubles; JSON numbers beyond it are doubles in JavaScript."""

METHODS: Final = frozenset(
    {"startsWith", "endsWith", "includes", "indexOf", "match", "toUpperCase", "toLowerCase", "trim"}
)
"""The methods a rule may call: the reference server's list."""


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()
"""JavaScript's ``undefined``: a missing key, an absent record's ``oldData`` and so on."""


class RuleError(Exception):
    """Evaluation failed (a property of ``null``, a bad regex, ...): the permission is refused
    with MESSAGE_PERMISSION_ERROR, as the reference server does for a rule that throws."""


def truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, int | float):
        return value != 0 and value == value  # 0 and NaN are falsy
    if isinstance(value, str):
        return value != ""
    return True  # objects and arrays, even empty ones


def typeof(value: Any) -> str:
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"  # null, arrays, objects


def _number_string(value: float) -> str:
    """ECMAScript Number::toString: ``1`` not ``1.0``, ``1e+21``, ``1e-7``, ``0.000001``."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number_string(-value)
    _, digit_tuple, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


def js_string(value: Any) -> str:
    """JavaScript's ``String(value)`` for JSON values."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value) if abs(value) <= _EXACT else _number_string(float(value))
    if isinstance(value, float):
        return _number_string(value)
    if isinstance(value, list):
        return ",".join(
            "" if item is None or item is UNDEFINED else js_string(item) for item in value
        )
    return "[object Object]"


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|Infinity)\Z")


def to_number(value: Any) -> float | int:
    """JavaScript's ``Number(value)``."""
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -_EXACT <= value <= _EXACT else float(value)  # a double, as in JS
    if value is None:
        return 0
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        if _NUMBER.match(text):
            return float(text)
        if text[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in text[2:]):
            return int(text[2:], 16) if len(text) > 2 else math.nan
        return math.nan
    if isinstance(value, list):
        return to_number(js_string(value))
    return math.nan  # undefined, objects


def _primitive(value: Any) -> Any:
    return js_string(value) if isinstance(value, list | dict) else value


def strict_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return to_number(a) == to_number(b)  # NaN != NaN, 1 == 1.0, doubles beyond 2**53
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return a is b  # objects compare by identity, as in JavaScript
    return type(a) is type(b) and a == b


def js_equal(a: Any, b: Any) -> bool:
    """JavaScript's loose ``==`` over JSON values."""
    if a is None or a is UNDEFINED:
        return b is None or b is UNDEFINED
    if b is None or b is UNDEFINED:
        return False
    if isinstance(a, list | dict) and isinstance(b, list | dict):
        return a is b
    a, b = _primitive(a), _primitive(b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return to_number(a) == to_number(b)


def less(a: Any, b: Any) -> bool | None:
    """``a < b`` in JavaScript; ``None`` when a NaN makes every comparison false."""
    a, b = _primitive(a), _primitive(b)
    if isinstance(a, str) and isinstance(b, str):
        return _utf16(a) < _utf16(b)
    x, y = to_number(a), to_number(b)
    if x != x or y != y:
        return None
    return x < y


def _utf16(text: str) -> str:
    """Strings compare by UTF-16 code units in JavaScript; code points agree below U+10000,
    and above it comparing the UTF-16 bytes (as latin-1 text) keeps the units' order."""
    if text.isascii() or max(text) < "\U00010000":
        return text
    return text.encode("utf-16-be").decode("latin-1")


def _length(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def get(target: Any, key: Any) -> Any:
    """``target[key]``: own keys of objects, indices of arrays and strings, ``length``."""
    if target is None or target is UNDEFINED:
        raise RuleError(f"cannot read property {js_string(key)!r} of {js_string(target)}")
    if isinstance(target, dict):
        return target.get(key if isinstance(key, str) else js_string(key), UNDEFINED)
    if isinstance(target, list | str):
        if key == "length":
            return len(target) if isinstance(target, list) else _length(target)
        index = _index(key)
        if index is not None and index < len(target):
            return target[index]
    return UNDEFINED


def _index(key: Any) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key if key >= 0 else None
    if isinstance(key, float) and key.is_integer() and key >= 0:
        return int(key)
    if isinstance(key, str) and key.isdigit() and (key == "0" or key[0] != "0"):
        return int(key)
    return None


def add(a: Any, b: Any) -> Any:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return a + b if not isinstance(b, bool) else a + int(b)
    a, b = _primitive(a), _primitive(b)
    if isinstance(a, str) or isinstance(b, str):
        result = js_string(a) + js_string(b)
        if len(result) > MAX_STRING_RESULT:
            raise RuleError(f"string longer than {MAX_STRING_RESULT} characters")
        return result
    return to_number(a) + to_number(b)


def arith(op: str, a: Any, b: Any) -> float | int:
    x, y = to_number(a), to_number(b)
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        if y == 0:
            if x == 0 or x != x:
                return math.nan
            return math.copysign(math.inf, x) * math.copysign(1, y)
        result = x / y
        return int(result) if isinstance(x, int) and isinstance(y, int) and x % y == 0 else result
    # %: the sign of the dividend, as in JavaScript
    if y == 0 or x != x or y != y or x in (math.inf, -math.inf):
        return math.nan
    return math.fmod(x, y) if isinstance(x, float) or isinstance(y, float) else _int_mod(x, int(y))


def _int_mod(x: int, y: int) -> int:
    result = abs(x) % abs(y)
    return -result if x < 0 else result


_REGEX_CACHE: dict[tuple[str, str], Any] = {}
_REGEX_OPTIONS = re2.Options()
_REGEX_OPTIONS.max_mem = 8 << 20


def regex(source: str, flags: str) -> Any:
    key = (source, flags)
    compiled = _REGEX_CACHE.get(key)
    if compiled is None:
        if len(source) > MAX_REGEX_LENGTH:
            raise RuleError(f"regular expression longer than {MAX_REGEX_LENGTH} characters")
        prefix = "".join(f"(?{flag})" for flag in "ims" if flag in flags)
        try:
            compiled = re2.compile(prefix + source, _REGEX_OPTIONS)
        except re2.error as exc:
            raise RuleError(f"invalid regular expression /{source}/: {exc}") from exc
        if len(_REGEX_CACHE) > 1024:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[key] = compiled
    return compiled


@dataclass(frozen=True, slots=True)
class Regex:
    """A regex literal's value: only ``match`` accepts it."""

    source: str
    flags: str


def _position(value: Any, default: int) -> int:
    if value is UNDEFINED:
        return default
    number = to_number(value)
    if number != number:
        return 0
    return int(max(-(1 << 53), min(1 << 53, number)))


def call_method(target: Any, method: str, args: list[Any]) -> Any:
    if isinstance(target, list):
        if method in ("includes", "indexOf"):
            needle = args[0] if args else UNDEFINED
            for index, item in enumerate(target):
                same = strict_equal(item, needle) or (
                    method == "includes" and _is_nan(item) and _is_nan(needle)
                )
                if same:
                    return True if method == "includes" else index
            return False if method == "includes" else -1
        raise RuleError(f"arrays have no method {method!r}")
    if not isinstance(target, str):
        raise RuleError(f"{method}() called on {typeof(target)}")
    if method == "toUpperCase":
        return target.upper()
    if method == "toLowerCase":
        return target.lower()
    if method == "trim":
        return target.strip()
    if method == "match":
        pattern = args[0] if args else UNDEFINED
        literal = pattern if isinstance(pattern, Regex) else Regex(js_string(pattern), "")
        compiled = regex(literal.source, literal.flags)
        if "g" in literal.flags:
            found = [m.group(0) for m in compiled.finditer(target)]
            return found or None
        match = compiled.search(target)
        if match is None:
            return None
        return [match.group(0), *(UNDEFINED if g is None else g for g in match.groups())]
    needle = js_string(args[0]) if args else "undefined"
    if method == "startsWith":
        return target.startswith(
            needle, max(0, _position(args[1] if len(args) > 1 else UNDEFINED, 0))
        )
    if method == "endsWith":
        end = _position(args[1] if len(args) > 1 else UNDEFINED, len(target))
        return target.endswith(needle, 0, max(0, end))
    start = max(0, _position(args[1] if len(args) > 1 else UNDEFINED, 0))
    if method == "includes":
        return target.find(needle, start) != -1
    return target.find(needle, start)  # indexOf


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def negate(value: float | int) -> float | int:
    return -0.0 if value == 0 and isinstance(value, int) else -value
