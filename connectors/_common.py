"""Small helpers shared by the bundled connectors (not part of the contract).

Every bundled connector imports its driver with :func:`import_driver`, in its constructor or
``open()`` (never at module top level), so a missing driver is one line naming the extra:

    redis = import_driver("redis.asyncio", "redis")  # else: pip install 'recordgate[redis]'

``DriverMissing`` is a ``ConfigError``: ``recordgate start`` prints it as one line and exits 2,
and the conformance suite stops with it as a usage error.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from connectors.base import JSON, StorageError, StorageRejected, StorageTimeout
from gateway.exceptions import DriverMissing

__all__ = [
    "Translate",
    "dump_json",
    "guarded",
    "import_driver",
    "load_json",
    "option_float",
    "option_int",
    "prefix_upper_bound",
]


def import_driver(module: str, extra: str, *, needed_for: str = "") -> ModuleType:
    """Import a connector's driver ``module``; ``DriverMissing`` naming ``recordgate[extra]``
    if it is not installed or cannot be imported (a broken install, a missing dependency).

    ``needed_for`` says who needs it in the message (default: the ``extra`` storage).
    """
    who = needed_for or f"the {extra} storage"
    hint = f"pip install 'recordgate[{extra}]'"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        root = module.partition(".")[0]
        if exc.name in (module, root) or (exc.name or "").startswith(root + "."):
            raise DriverMissing(
                f"{who} needs the Python package {root!r}, which is not installed: {hint}"
            ) from exc
        raise DriverMissing(f"{who}: driver {module!r} cannot be imported ({exc}): {hint}") from exc
    except ImportError as exc:
        raise DriverMissing(f"{who}: driver {module!r} cannot be imported ({exc}): {hint}") from exc


# One encoder for all calls: json.dumps with non-default arguments builds a new one every time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _c_encoder() -> Callable[[Any], str]:
    """``_ENCODER.encode`` without its per-call setup (it builds the C encoder on every call,
    about 40% of the time for a small record): the C encoder the stdlib would build, made once.
    No circular-reference markers (a shared dict would keep stale ids after an error): a cycle
    raises ``RecursionError`` instead. Falls back to ``_ENCODER.encode`` if the C encoder is
    absent or does not behave as the stdlib's own."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    try:
        # The arguments JSONEncoder.iterencode passes: markers, default, string encoder,
        # indent, separators, sort_keys, skipkeys, allow_nan.
        encode = make(
            None,
            _ENCODER.default,
            json.encoder.encode_basestring,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )

        def dumps(data: Any) -> str:
            return "".join(encode(data, 0))

        sample = {"é": [1, 2.5, None, True, '"\n'], "o": {}}
        if dumps(sample) != _ENCODER.encode(sample):
            return _ENCODER.encode
    except Exception:
        return _ENCODER.encode
    return dumps


_dumps = _c_encoder()


def dump_json(data: JSON) -> str:
    """Serialise record data; non-JSON values (NaN, sets, objects) are ``StorageRejected``."""
    if not isinstance(data, dict | list):
        raise StorageRejected(f"record data must be a JSON object or array, not {type(data)}")
    try:
        return _dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: a cycle, or deep
        raise StorageRejected(f"record data is not JSON: {exc}") from exc


def load_json(text: str | bytes) -> Any:
    return json.loads(text)


def option_float(value: object, name: str) -> float:
    """Options may arrive as strings (``--connector-option timeout=2``)."""
    try:
        if isinstance(value, str | int | float):
            return float(value)
    except ValueError as exc:
        raise ValueError(f"option {name!r} must be a number, got {value!r}") from exc
    raise ValueError(f"option {name!r} must be a number, got {value!r}")


def option_int(value: object, name: str) -> int:
    try:
        if isinstance(value, str | int):
            return int(value)
    except ValueError as exc:
        raise ValueError(f"option {name!r} must be an integer, got {value!r}") from exc
    raise ValueError(f"option {name!r} must be an integer, got {value!r}")


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    Lets a prefix scan be a range (``prefix <= name < bound``) in code-point order, where
    LIKE would treat ``%``/``_`` as wildcards. ``None`` means unbounded (prefix is empty or
    all U+10FFFF). Surrogates are skipped: they cannot be stored as UTF-8.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


Translate = Callable[[BaseException, str], StorageError | None]
"""A connector's driver-error translation: the project's error for ``exc`` during ``what``, or
``None`` for an error that is not the driver's (it is raised as it is)."""


@asynccontextmanager
async def guarded(what: str, seconds: float, translate: Translate) -> AsyncIterator[None]:
    """Bound the block by ``seconds`` and translate what escapes it: the timeout is
    ``StorageTimeout``, a driver error what ``translate`` makes of it, a ``StorageError`` passes."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except StorageError:
        raise
    except TimeoutError as exc:
        raise StorageTimeout(f"{what} did not finish within {seconds:g}s") from exc
    except Exception as exc:
        error = translate(exc, what)
        if error is None:
            raise
        raise error from exc
