"""The users file: ``auth: [{type: file, users: users.yml}]``.

The file maps user names to ``{password: HASH, serverData: ..., clientData: ...}``, where HASH
comes from ``recordgate hash``. A login names ``username`` and ``password``. An unknown user is
not this strategy's to answer (the next one is asked); a wrong password is a failed login. The
file is read at startup (any problem is a ``ConfigError`` naming the file and the user) and again
on :meth:`reload` (SIGHUP), where a broken file is logged and the users already loaded stay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from ..exceptions import ConfigError
from .base import AuthResult
from .passwords import check_format, verify_password

__all__ = ["FileAuthenticator"]

log = logging.getLogger(__name__)

MAX_CONCURRENT_CHECKS: Final = 2
"""Password checks running at once (each is deliberately slow); further logins wait."""
_DUMMY_HASH: Final = (
    "$scrypt$ln=15,r=8,p=1$Psy8mVmR1mWUZzFjimuDBA$cImcyD3PCe7NaV1EpxITs7xnUt3FTa6wfl64+QWFGf4"
)
"""Checked for unknown users too, so timing does not tell which user names exist."""


@dataclass(frozen=True, slots=True)
class _User:
    password: str
    server_data: Any
    client_data: Any


_MISSING_PARAMETERS: Final = {"error": "missing authentication parameter: username or/and password"}


class FileAuthenticator:
    def __init__(self, users: str | Path) -> None:
        self.path = Path(users)
        self._users = _read(self.path)
        self._slots: asyncio.Semaphore | None = None

    async def check(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult | None:
        username, password = auth_data.get("username"), auth_data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            # What the reference's file strategy answers; later strategies may still accept.
            return AuthResult(False, client_data=_MISSING_PARAMETERS, pass_on=True)
        user = self._users.get(username)
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)
        async with self._slots:
            encoded = user.password if user is not None else _DUMMY_HASH
            valid = await asyncio.to_thread(verify_password, password, encoded)
        if user is None:
            return None
        if not valid:
            return AuthResult(False)
        return AuthResult(True, username, user.client_data, user.server_data)

    def reload(self) -> None:
        try:
            self._users = _read(self.path)
        except ConfigError as exc:
            log.error("%s; keeping the %d users loaded before", exc, len(self._users))
        else:
            log.info("reloaded %d users from %s", len(self._users), self.path)

    async def close(self) -> None:
        pass


def _read(path: Path) -> dict[str, _User]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"auth file: cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"auth file: {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"auth file: {path} must map user names to their entries")
    users: dict[str, _User] = {}
    for name, entry in raw.items():
        where = f"auth file: {path}: user {name!r}"
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: user names are non-empty strings")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected {{password: ..., serverData: ...}}")
        unknown = set(entry) - {"password", "serverData", "clientData"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        password = entry.get("password")
        if not isinstance(password, str) or not check_format(password):
            raise ConfigError(
                f"{where}: password must be a hash made by `recordgate hash` (never plain text)"
            )
        users[name] = _User(password, entry.get("serverData"), entry.get("clientData"))
    return users
