"""A client survives a server restart: it reconnects, logs in again, and restores subscriptions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import HERE, RecordgateProcess

pytestmark = pytest.mark.interop


def test_client_reconnects_after_server_restart(node: str, tmp_path: Path) -> None:
    if os.environ.get("RECORDGATE_INTEROP_URL"):
        pytest.skip("restarts its own recordgate; not possible against an external server")
    server = RecordgateProcess(tmp_path)
    server.start()
    script = HERE / "scenarios" / "reconnect.js"
    client = subprocess.Popen(
        [node, str(script), server.url],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        line = client.stdout.readline().strip()
        assert line == "RESTART-NOW", line + client.stdout.read()
        server.stop()
        server.start()  # same port, same working directory
        client.stdin.write("restarted\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
        server.stop()
    assert client.returncode == 0, f"{out}\n{err}\n{server.log.read_text()}"
    r = json.loads(out.strip().splitlines()[-1])
    assert r["sawReconnecting"] is True
    assert r["finalState"] == "OPEN"
    assert r["received"] == ["after restart"]  # the event subscription was restored
    assert r["rpc"] == {"ok": "pong ping"}  # so was the RPC provider
    assert "survivor" in r["online"]["ok"]  # logged in again with the same auth data
    assert all(e["topic"] == "CONNECTION" for e in r["errors"]), r["errors"]
