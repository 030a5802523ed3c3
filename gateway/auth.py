"""Authentication: the pluggable ``Authenticator`` interface and open authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["OPEN_USER", "AuthResult", "Authenticator", "OpenAuthenticator"]

OPEN_USER = "open"
"""The user id of a login that names no user; such users are not part of presence."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    user_id: str = OPEN_USER
    client_data: Any = None
    """Sent back to the client with the login answer."""
    server_data: Any = None
    """Kept on the server; visible to permission rules as ``user.data``."""


class Authenticator(Protocol):
    async def authenticate(self, auth_data: dict[str, Any]) -> AuthResult: ...


class OpenAuthenticator:
    """Everyone gets in; the user id is ``auth_data['username']`` when it is a string."""

    async def authenticate(self, auth_data: dict[str, Any]) -> AuthResult:
        username = auth_data.get("username")
        if isinstance(username, str) and username:
            return AuthResult(True, user_id=username)
        return AuthResult(True)
