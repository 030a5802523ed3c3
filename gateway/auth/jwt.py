"""JSON Web Token authentication: ``auth: [{type: jwt, secret | public_key | jwks: ...}]``.

A login carries a token in ``auth_data[token_field]`` (default ``token``); a login without one
is not for this strategy. The token is verified with PyJWT against the configured key and
``algorithms`` (one family only: HMAC with ``secret``, or RSA/ECDSA with a PEM ``public_key`` or
a JWKS file, so a public key can never be used as an HMAC secret; ``none`` is refused), with
``exp`` required and ``nbf``, ``aud`` (``audience``) and ``iss`` (``issuer``) checked, ``leeway``
seconds of clock skew allowed. The user id is the ``id_claim`` (default ``sub``); ``serverData``
is the ``server_data_claim`` if set, else every claim; ``clientData`` the ``client_data_claim``
if set. Key files are read at startup and on :meth:`reload` (SIGHUP).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..exceptions import ConfigError
from ..limits import ThrottledLog
from .base import AuthResult

__all__ = ["JwtAuthenticator"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)  # clients cause these lines, one per login attempt

_HMAC: Final = frozenset({"HS256", "HS384", "HS512"})
_PUBLIC: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_INVALID: Final = {"error": "invalid token"}


class JwtAuthenticator:
    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        jwks: str | None = None,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        token_field: str = "token",
        id_claim: str = "sub",
        server_data_claim: str | None = None,
        client_data_claim: str | None = None,
    ) -> None:
        try:
            import jwt
        except ImportError as exc:
            raise ConfigError("auth jwt needs PyJWT: pip install 'recordgate[jwt]'") from exc
        self._jwt = jwt
        algorithms = list(algorithms)
        if not algorithms or not set(algorithms) <= _HMAC | _PUBLIC:
            raise ConfigError(
                f"auth jwt: algorithms must be from {', '.join(sorted(_HMAC | _PUBLIC))}"
            )
        hmac = set(algorithms) <= _HMAC
        if not hmac and not set(algorithms) <= _PUBLIC:
            raise ConfigError("auth jwt: do not mix HMAC (HS*) and public-key algorithms")
        keys = [k for k in (secret, public_key, jwks) if k is not None]
        if len(keys) != 1:
            raise ConfigError("auth jwt: give exactly one of secret, public_key, jwks")
        if hmac != (secret is not None):
            raise ConfigError(
                "auth jwt: HS* algorithms need `secret`; RS*/ES*/PS* need `public_key` or `jwks`"
            )
        if secret is not None and len(secret.encode()) < 32:
            raise ConfigError("auth jwt: secret must be at least 32 bytes")
        self.algorithms = algorithms
        self.secret = secret
        self.public_key_path = Path(public_key) if public_key else None
        self.jwks_path = Path(jwks) if jwks else None
        self.audience, self.issuer, self.leeway = audience, issuer, leeway
        self.token_field, self.id_claim = token_field, id_claim
        self.server_data_claim, self.client_data_claim = server_data_claim, client_data_claim
        self._key: Any = None
        self._jwks: Any = None
        self._load_keys()

    def _load_keys(self) -> None:
        jwt = self._jwt
        try:
            if self.public_key_path is not None:
                self._key = self.public_key_path.read_text(encoding="utf-8")
                jwt.algorithms.get_default_algorithms()[self.algorithms[0]].prepare_key(self._key)
            elif self.jwks_path is not None:
                self._jwks = jwt.PyJWKSet.from_dict(
                    json.loads(self.jwks_path.read_text(encoding="utf-8"))
                )
            else:
                self._key = self.secret
        except OSError as exc:
            raise ConfigError(f"auth jwt: cannot read key file: {exc.strerror or exc}") from exc
        except (ValueError, jwt.PyJWTError) as exc:
            raise ConfigError(f"auth jwt: unusable key: {exc}") from exc

    async def check(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult | None:
        token = auth_data.get(self.token_field)
        if not isinstance(token, str) or not token:
            return None
        jwt = self._jwt
        try:
            key = self._key
            if self._jwks is not None:
                kid = jwt.get_unverified_header(token).get("kid")
                matches = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
                if not matches:
                    raise jwt.InvalidKeyError("no key in the JWKS matches the token's kid")
                key = matches[0].key
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            _throttled.info("jwt login refused: %s", type(exc).__name__)  # never the token itself
            return AuthResult(False, client_data=_INVALID)
        user = claims.get(self.id_claim)
        if isinstance(user, int) and not isinstance(user, bool):
            user = str(user)
        if not isinstance(user, str) or not user:
            _throttled.info("jwt login refused: no %r claim", self.id_claim)
            return AuthResult(False, client_data=_INVALID)
        server_data = (
            claims if self.server_data_claim is None else claims.get(self.server_data_claim)
        )
        client_data = None if self.client_data_claim is None else claims.get(self.client_data_claim)
        return AuthResult(True, user, client_data, server_data)

    def reload(self) -> None:
        try:
            self._load_keys()
        except ConfigError as exc:
            log.error("%s; keeping the keys loaded before", exc)

    async def close(self) -> None:
        pass
