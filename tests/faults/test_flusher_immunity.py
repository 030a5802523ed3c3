"""An error that is not a storage error fails that one operation, never the batch or the
flusher: real ``recordgate start`` processes, real SQLite and PostgreSQL, and a connector that
smuggles unstorable data past the JSON edge (``tests/faults/poison.py``) so that the real
driver raises its real error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.faults.conftest import R, Storage, write
from tests.gateway.test_metrics import parse
from tests.gateway.test_server import http_get

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"], indirect=True)  # the double is SQL
@pytest.mark.parametrize("poison", ["surrogate", "set"])
async def test_a_record_the_driver_cannot_take_fails_alone(
    storage: Storage, start_server, peers, monkeypatch: pytest.MonkeyPatch, poison: str
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the server process imports tests.faults.poison
    section = {**storage.section(), "type": "tests.faults.poison:PoisonSQLConnector"}
    server = await start_server({"storage": section, "write_behind": {"interval": 0.05}})
    peer = await peers(server.url)
    names = [f"doc/{i}" for i in range(20)]
    for i, name in enumerate(names):  # the bad one in the middle of one batch
        await peer.send(write(name, {"i": i}, ack=name))
        if i == 10:
            await peer.send(write("bad", {"poison": poison}, ack="bad"))
    replies = {}
    async with asyncio.timeout(15):
        while len(replies) < len(names) + 1:
            msg = await peer.recv(15)
            replies[msg.correlation_id] = msg
    bad = replies.pop("bad")
    assert (bad.action, bad.name, bad.is_error, bad.is_write_ack) == (
        R.RECORD_UPDATE_ERROR,
        "bad",
        True,
        True,
    )
    assert {msg.action for msg in replies.values()} == {R.WRITE_ACKNOWLEDGEMENT}
    stored = await storage.read([*names, "bad"])
    assert stored == {**{n: (1, {"i": i}) for i, n in enumerate(names)}, "bad": None}

    # The flusher goes on: later writes, acknowledged or not, reach storage.
    await peer.send(write("after", {"ok": True}, ack="after"))
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await peer.send(write("unacked", {"ok": True}))
    await storage.wait_for("unacked", (1, {"ok": True}))
    port = int(server.url.split(":")[2].split("/")[0])
    metrics = parse((await http_get(port, "/metrics"))[1])
    assert metrics["recordgate_store_failed_total"] == 1
    assert metrics["recordgate_store_pending"] == 0
    # Logged once (with what failed), not once per retry.
    lines = [line for line in server.log().splitlines() if "'bad'" in line]
    assert len(lines) == 1 and "storage refused the write of record 'bad'" in lines[0], lines
