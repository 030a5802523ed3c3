"""The authentication contract: strategies, their results, and the chain that tries them.

A strategy answers a login with an :class:`AuthResult` (valid or not) or ``None`` when the login
is not for it (no token for the JWT strategy, an unknown user for the users file), and the
:class:`AuthChain` asks the configured strategies in order: the first answer decides, as the
reference server combines its handlers. A strategy never logs or echoes the auth data: it
carries passwords and tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["OPEN_USER", "AuthChain", "AuthResult", "AuthStrategy", "Authenticator"]

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
    pass_on: bool = False
    """A refusal that lets the strategies after this one try: the chain answers it only if
    none of them does (the file strategy's missing username or password)."""


class Authenticator(Protocol):
    """What the server asks: always an answer."""

    async def authenticate(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult: ...


class AuthStrategy(Protocol):
    """One configured way to log in (``auth: [{type: ...}, ...]``)."""

    async def check(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult | None:
        """The answer, or ``None`` when this login is not for this strategy. ``connection``
        holds ``remoteAddress`` and the upgrade request's ``headers``."""

    def reload(self) -> None:
        """Re-read what the strategy reads from files (SIGHUP); keep the old on error."""

    async def close(self) -> None: ...


class AuthChain:
    """The configured strategies, asked in order; nobody answering is a failed login."""

    def __init__(self, strategies: Sequence[AuthStrategy]) -> None:
        self.strategies = tuple(strategies)

    async def authenticate(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult:
        passed_on: AuthResult | None = None
        for strategy in self.strategies:
            result = await strategy.check(auth_data, connection)
            if result is None:
                continue
            if not result.pass_on:
                return result
            passed_on = passed_on or result
        return passed_on or AuthResult(False)

    def reload(self) -> None:
        for strategy in self.strategies:
            strategy.reload()

    async def close(self) -> None:
        for strategy in self.strategies:
            await strategy.close()
