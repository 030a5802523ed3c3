"""The jwt strategy with real signed tokens (HMAC, RSA, ECDSA through a JWKS file)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth.jwt import JwtAuthenticator
from gateway.exceptions import ConfigError

SECRET = "a-secret-of-at-least-64-bytes-so-every-hmac-algorithm-accepts-it!"


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "ada", "exp": int(time.time()) + 60, **extra}


async def test_a_valid_hs256_token_logs_in_with_its_claims() -> None:
    auth = JwtAuthenticator(secret=SECRET, client_data_claim="profile")
    token = jwt.encode(_claims(role="admin", profile={"n": 1}), SECRET, "HS256")
    result = await auth.check({"token": token})
    assert result is not None and result.ok and result.user_id == "ada"
    assert result.server_data["role"] == "admin" and result.client_data == {"n": 1}
    assert await auth.check({"username": "ada"}) is None  # no token: not for this strategy


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(_claims(exp=int(time.time()) - 120), SECRET, "HS256"),  # expired
        jwt.encode(_claims(nbf=int(time.time()) + 600), SECRET, "HS256"),  # not yet valid
        jwt.encode({"sub": "ada"}, SECRET, "HS256"),  # no exp
        jwt.encode(_claims(), SECRET[::-1], "HS256"),  # another key
        jwt.encode(_claims(), SECRET, "HS512"),  # an algorithm not configured
        jwt.encode(_claims(), None, "none"),  # unsigned
        jwt.encode({"exp": int(time.time()) + 60}, SECRET, "HS256"),  # no sub
        "not.a.token",
        jwt.encode(_claims(), SECRET, "HS256")[:-3] + "AAA",  # tampered signature
    ],
    # ids of their own: some tokens hold the clock, and pytest-xdist's workers must collect the
    # same test names
    ids=[
        "expired",
        "not yet valid",
        "no exp",
        "another key",
        "unconfigured algorithm",
        "unsigned",
        "no sub",
        "not a token",
        "tampered signature",
    ],
)
async def test_bad_tokens_fail_without_saying_more(token: str) -> None:
    result = await JwtAuthenticator(secret=SECRET).check({"token": token})
    assert result is not None and not result.ok and result.client_data == {"error": "invalid token"}


async def test_audience_and_issuer_are_checked() -> None:
    auth = JwtAuthenticator(secret=SECRET, audience="recordgate", issuer="https://idp")
    good = jwt.encode(_claims(aud="recordgate", iss="https://idp"), SECRET, "HS256")
    assert (await auth.check({"token": good})).ok  # type: ignore[union-attr]
    for claims in (_claims(aud="other", iss="https://idp"), _claims(aud="recordgate")):
        token = jwt.encode(claims, SECRET, "HS256")
        assert not (await auth.check({"token": token})).ok  # type: ignore[union-attr]


def _pem_public(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_rs256_with_a_public_key_and_no_algorithm_confusion(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = _pem_public(private)
    (tmp_path / "pub.pem").write_text(public_pem)
    auth = JwtAuthenticator(public_key=str(tmp_path / "pub.pem"), algorithms=["RS256"])
    token = jwt.encode(_claims(), private, "RS256")
    assert (await auth.check({"token": token})).ok  # type: ignore[union-attr]

    # The classic attack: an HS256 token whose HMAC key is the (public) PEM text.
    # (PyJWT refuses to make one, so it is made by hand.)
    def part(obj: Any) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(_claims())
    mac = hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    assert not (await auth.check({"token": forged})).ok  # type: ignore[union-attr]


async def test_es256_keys_from_a_jwks_file_chosen_by_kid(tmp_path: Path) -> None:
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("k1", "k2")}
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key())), "kid": kid}
            for kid, k in keys.items()
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    auth = JwtAuthenticator(jwks=str(tmp_path / "jwks.json"), algorithms=["ES256"])
    for kid, key in keys.items():
        token = jwt.encode(_claims(), key, "ES256", headers={"kid": kid})
        assert (await auth.check({"token": token})).ok  # type: ignore[union-attr]
    wrong = jwt.encode(_claims(), keys["k1"], "ES256", headers={"kid": "k2"})
    assert not (await auth.check({"token": wrong})).ok  # type: ignore[union-attr]
    unknown = jwt.encode(_claims(), keys["k1"], "ES256", headers={"kid": "k9"})
    assert not (await auth.check({"token": unknown})).ok  # type: ignore[union-attr]


def test_configuration_mistakes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="do not mix"):
        JwtAuthenticator(secret=SECRET, algorithms=["HS256", "RS256"])
    with pytest.raises(ConfigError, match="need `secret`"):
        JwtAuthenticator(secret=SECRET, algorithms=["RS256"])
    with pytest.raises(ConfigError, match="algorithms must be"):
        JwtAuthenticator(secret=SECRET, algorithms=["none"])
    with pytest.raises(ConfigError, match="cannot read key file"):
        JwtAuthenticator(public_key=str(tmp_path / "missing.pem"), algorithms=["RS256"])
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="unusable key"):
        JwtAuthenticator(public_key=str(tmp_path / "bad.pem"), algorithms=["RS256"])
