"""The users file strategy: hashes only, unknown users left to the next strategy, reload."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.auth.file import FileAuthenticator
from gateway.auth.passwords import hash_password
from gateway.exceptions import ConfigError

ADA_HASH = hash_password("ada-pass")


def _users(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "users.yml"
    path.write_text(text)
    return path


async def test_valid_wrong_and_unknown_logins(tmp_path: Path) -> None:
    path = _users(
        tmp_path,
        f"ada: {{password: '{ADA_HASH}', serverData: {{role: admin}}, clientData: {{x: 1}}}}\n",
    )
    auth = FileAuthenticator(path)
    ok = await auth.check({"username": "ada", "password": "ada-pass"})
    assert ok is not None and ok.ok and ok.user_id == "ada"
    assert ok.server_data == {"role": "admin"} and ok.client_data == {"x": 1}
    wrong = await auth.check({"username": "ada", "password": "nope"})
    assert wrong is not None and not wrong.ok and wrong.server_data is None
    assert await auth.check({"username": "bob", "password": "ada-pass"}) is None
    # Missing credentials: the reference's answer, passed on to later strategies in a chain.
    missing = {"error": "missing authentication parameter: username or/and password"}
    for data in ({"username": "ada"}, {"username": "ada", "password": 5}, {}):
        refused = await auth.check(data)
        assert refused is not None and not refused.ok and refused.pass_on
        assert refused.client_data == missing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ada: {password: plaintext}", "hash made by `recordgate hash`"),
        ("ada: {password: 'x', role: admin}", "unknown key"),
        ("- ada", "must map user names"),
        ("{}", "must map user names"),
        ("ada: [1]", "expected"),
        ("ada: {password: [", "not valid YAML"),
    ],
)
def test_a_bad_users_file_is_a_config_error_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        FileAuthenticator(_users(tmp_path, text))
    assert "users.yml" in str(error.value)
    with pytest.raises(ConfigError, match="cannot read"):
        FileAuthenticator(tmp_path / "missing.yml")


async def test_reload_picks_up_changes_and_keeps_the_old_users_on_a_broken_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _users(tmp_path, f"ada: {{password: '{ADA_HASH}'}}\n")
    auth = FileAuthenticator(path)
    path.write_text(f"bob: {{password: '{hash_password('bob-pass')}'}}\n")
    auth.reload()
    assert await auth.check({"username": "ada", "password": "ada-pass"}) is None
    result = await auth.check({"username": "bob", "password": "bob-pass"})
    assert result is not None and result.ok
    path.write_text("bob: {password: oops}")
    with caplog.at_level(logging.ERROR):
        auth.reload()
    assert "keeping the 1 users" in caplog.text
    result = await auth.check({"username": "bob", "password": "bob-pass"})
    assert result is not None and result.ok


async def test_many_logins_at_once_neither_block_the_loop_nor_leak_passwords(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = FileAuthenticator(_users(tmp_path, f"ada: {{password: '{ADA_HASH}'}}\n"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    with caplog.at_level(logging.DEBUG):
        results = await asyncio.gather(
            *(auth.check({"username": "ada", "password": f"guess-{i}"}) for i in range(8))
        )
    task.cancel()
    assert all(r is not None and not r.ok for r in results)
    assert ticks >= 5  # the loop kept running while hashes were checked in threads
    assert "guess-" not in caplog.text
