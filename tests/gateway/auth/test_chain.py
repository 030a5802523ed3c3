"""The auth chain and its construction from the config's ``auth:`` list."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from gateway.auth import create_authenticator
from gateway.auth.passwords import hash_password
from gateway.config import load_config
from gateway.exceptions import ConfigError


async def test_no_entries_is_open_authentication() -> None:
    chain = create_authenticator([])
    result = await chain.authenticate({"username": "ada"})
    assert result.ok and result.user_id == "ada"
    assert (await chain.authenticate({})).user_id == "open"


async def test_strategies_are_asked_in_order_and_the_first_answer_decides(tmp_path: Path) -> None:
    users = tmp_path / "users.yml"
    users.write_text(f"ada: {{password: '{hash_password('pw')}'}}\n")
    secret = "s" * 32
    chain = create_authenticator(
        [{"type": "file", "users": str(users)}, {"type": "jwt", "secret": secret}]
    )
    assert (await chain.authenticate({"username": "ada", "password": "pw"})).ok
    assert not (await chain.authenticate({"username": "ada", "password": "bad"})).ok
    # unknown to the file, no token for jwt: nobody answers, so the login fails
    assert not (await chain.authenticate({"username": "zed", "password": "pw"})).ok
    # unknown to the file, but a token: jwt decides
    assert not (await chain.authenticate({"username": "zed", "token": "x.y.z"})).ok
    # no password: the file strategy's refusal (the reference's clientData) is passed on, so a
    # valid token still logs in; without one the file strategy's answer is the chain's
    token = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    result = await chain.authenticate({"token": token})
    assert result.ok and result.user_id == "eve"
    refused = await chain.authenticate({"username": "ada"})
    assert not refused.ok
    assert refused.client_data == {
        "error": "missing authentication parameter: username or/and password"
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "ldap"}, "unknown type 'ldap'"),
        ({"users": "x"}, r"expected \{type:"),
        ({"type": "file"}, "missing option 'users'"),
        ({"type": "file", "users": "u.yml", "hash": "md5"}, "unknown option 'hash'"),
        ({"type": "none", "x": 1}, "unexpected option"),
        ({"type": "http", "url": "ftp://x"}, "http\\(s\\) URL"),
        ({"type": "jwt"}, "exactly one of secret"),
        ({"type": "jwt", "secret": "short"}, "at least 32 bytes"),
    ],
)
def test_bad_entries_are_config_errors_naming_the_entry(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        create_authenticator([{"type": "none"}, entry])
    assert "auth[1]" in str(error.value)


def test_file_paths_in_the_config_are_relative_to_its_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    config_file = tmp_path / "conf" / "recordgate.yaml"
    config_file.write_text(
        "auth: [{type: file, users: users.yml}, {type: jwt, jwks: keys/jwks.json}]\n"
    )
    config = load_config(config_file)
    assert config.auth[0]["users"] == str(tmp_path / "conf" / "users.yml")
    assert config.auth[1]["jwks"] == str(tmp_path / "conf" / "keys" / "jwks.json")
