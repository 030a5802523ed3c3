"""Authentication: the strategies of the config's ``auth:`` list, tried in order.

``create_authenticator(config.auth, base_dir)`` builds the chain; with no entries it is open
authentication (everyone gets in). Strategies: ``none``/``open``, ``file`` (a users file with
scrypt hashes), ``http`` (a webhook, as deepstream's) and ``jwt`` (signed tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..exceptions import ConfigError
from .base import OPEN_USER, AuthChain, Authenticator, AuthResult, AuthStrategy
from .open import OpenAuthenticator

__all__ = [
    "OPEN_USER",
    "STRATEGIES",
    "AuthChain",
    "AuthResult",
    "AuthStrategy",
    "Authenticator",
    "OpenAuthenticator",
    "create_authenticator",
]

STRATEGIES = ("none", "open", "file", "http", "jwt")


def create_authenticator(entries: Sequence[dict[str, Any]]) -> AuthChain:
    """The chain for ``auth:`` entries (``[]``: open authentication). Raises ``ConfigError``
    naming the entry and the option for anything wrong. (``load_config`` has made file paths
    relative to the config file's directory.)"""
    if not entries:
        return AuthChain([OpenAuthenticator()])
    return AuthChain([_strategy(i, entry) for i, entry in enumerate(entries)])


def _strategy(index: int, entry: Any) -> AuthStrategy:
    where = f"auth[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConfigError(f"{where}: expected {{type: {' | '.join(STRATEGIES)}, ...}}")
    kind = entry["type"]
    options = {key: value for key, value in entry.items() if key != "type"}
    try:
        if kind in ("none", "open"):
            if options:
                raise TypeError(f"unexpected option(s) {', '.join(sorted(options))}")
            return OpenAuthenticator()
        if kind == "file":
            from .file import FileAuthenticator

            return FileAuthenticator(**options)
        if kind == "http":
            from .http import HttpAuthenticator

            return HttpAuthenticator(**options)
        if kind == "jwt":
            from .jwt import JwtAuthenticator

            return JwtAuthenticator(**options)
    except TypeError as exc:
        raise ConfigError(f"{where} ({kind}): {_option_error(exc)}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{where} ({kind}): {exc}") from exc
    raise ConfigError(f"{where}: unknown type {kind!r} (types: {', '.join(STRATEGIES)})")


def _option_error(exc: TypeError) -> str:
    text = str(exc)
    # "__init__() got an unexpected keyword argument 'x'" -> "unknown option 'x'"
    if "unexpected keyword argument" in text:
        return "unknown option " + text.rsplit("argument", 1)[1].strip()
    if "missing" in text and "required" in text:
        return "missing option " + text.rsplit(":", 1)[1].strip()
    return text.replace("__init__() ", "")
