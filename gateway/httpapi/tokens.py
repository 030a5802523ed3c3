"""Tokens from ``POST {http.path}/auth``: random, kept server-side, expiring, bounded in number."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from ..auth import AuthResult

__all__ = ["TokenStore"]


class TokenStore:
    """Issued tokens and the login each stands for.

    Every token lives ``ttl`` seconds, so insertion order is expiry order: expired tokens are
    dropped from the front, and past ``max_tokens`` the oldest go first. A token is 256 random
    bits (``secrets``); only this process knows it, so a restart logs every token out.
    """

    def __init__(
        self, *, ttl: float, max_tokens: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._clock = clock
        self._tokens: OrderedDict[str, tuple[float, AuthResult]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tokens)

    def issue(self, login: AuthResult) -> str:
        self._expire()
        while len(self._tokens) >= self.max_tokens:
            self._tokens.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (self._clock() + self.ttl, login)
        return token

    def login(self, token: str) -> AuthResult | None:
        """The login ``token`` stands for, or None if it is unknown or expired."""
        self._expire()
        entry = self._tokens.get(token)
        return None if entry is None else entry[1]

    def _expire(self) -> None:
        now = self._clock()
        tokens = self._tokens
        while tokens:
            token, (expires, _) = next(iter(tokens.items()))
            if expires > now:
                return
            del tokens[token]
