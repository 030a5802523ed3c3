"""SIGHUP re-reads the users file of a running ``recordgate start``: new logins follow the new
file, connections already logged in stay, and a broken file keeps the old users."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.auth.passwords import hash_password
from gateway.client import Client
from gateway.exceptions import AuthenticationFailed


async def _can_login(url: str, user: str, password: str) -> bool:
    try:
        async with Client(url, auth={"username": user, "password": password}, reconnect=False):
            return True
    except AuthenticationFailed:
        return False


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "SIGHUP had no effect"
        await asyncio.sleep(0.1)


async def test_sighup_reloads_the_users_file(tmp_path: Path, start_server) -> None:
    users = tmp_path / "users.yml"
    users.write_text(f"ada: {{password: '{hash_password('a')}'}}\n")
    server = await start_server(
        {"auth": [{"type": "file", "users": str(users)}], "storage": {"type": "memory"}},
        log_level="INFO",
    )
    assert server.process is not None
    async with Client(server.url, auth={"username": "ada", "password": "a"}) as ada:
        users.write_text(f"bob: {{password: '{hash_password('b')}'}}\n")
        server.process.send_signal(signal.SIGHUP)
        await _until(lambda: _can_login(server.url, "bob", "b"))
        assert not await _can_login(server.url, "ada", "a")
        record = await ada.record.get("still/here")  # ada's connection was not dropped
        await record.set({"ok": True})

        users.write_text("bob: {password: plain}\n")  # broken: the old users stay
        server.process.send_signal(signal.SIGHUP)
        await _until(lambda: _log_has(server.stderr, "keeping the 1 users"))
        assert await _can_login(server.url, "bob", "b")


async def _log_has(path: Path, text: str) -> bool:
    return text in await asyncio.to_thread(path.read_text)


pytestmark = pytest.mark.timeout(120)
