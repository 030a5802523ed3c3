"""SIGHUP re-reads the permission file of a running ``recordgate start``: connections stay and
follow the new rules; a broken file is logged and the old rules stay."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.client import Client
from gateway.exceptions import RecordError
from tests.faults.test_auth_reload import _log_has, _until

OPEN = "record: {'*': {create: true, read: true, write: true}}\n"
READ_ONLY = "record: {'*': {create: true, read: true, write: false}}\n"


async def _can_write(client: Client) -> bool:
    try:
        await client.record.set_data("doc", {"v": 1})
        return True
    except RecordError as exc:
        assert "MESSAGE_DENIED" in str(exc)
        return False


async def test_sighup_reloads_the_permissions(tmp_path: Path, start_server) -> None:
    rules = tmp_path / "permissions.yml"
    rules.write_text(OPEN)
    server = await start_server(
        {"permissions": str(rules), "storage": {"type": "memory"}}, log_level="INFO"
    )
    assert server.process is not None
    async with Client(server.url, auth={"username": "ada"}, request_timeout=5.0) as ada:
        assert await _can_write(ada)
        rules.write_text(READ_ONLY)
        server.process.send_signal(signal.SIGHUP)
        await _until(lambda: _denied(ada))  # the same connection, under the new rules
        with pytest.raises(RecordError, match="MESSAGE_DENIED"):
            await ada.record.set_data("other", {"x": 1})
        assert await ada.record.snapshot("doc") == {"v": 1}

        rules.write_text("record: {'*': {write: 'user.'}}\n")  # broken: the old rules stay
        server.process.send_signal(signal.SIGHUP)
        await _until(lambda: _log_has(server.stderr, "keeping the permissions loaded before"))
        assert not await _can_write(ada)


async def _denied(client: Client) -> bool:
    return not await _can_write(client)


pytestmark = pytest.mark.timeout(120)
