"""Open authentication: everyone gets in (the default when no ``auth`` is configured)."""

from __future__ import annotations

from typing import Any

from .base import AuthResult

__all__ = ["OpenAuthenticator"]


class OpenAuthenticator:
    """The user id is ``auth_data['username']`` when it is a non-empty string, else ``open``."""

    async def authenticate(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult:
        result = await self.check(auth_data)
        assert result is not None
        return result

    async def check(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult | None:
        username = auth_data.get("username")
        if isinstance(username, str) and username:
            return AuthResult(True, user_id=username)
        return AuthResult(True)

    def reload(self) -> None:
        pass

    async def close(self) -> None:
        pass
