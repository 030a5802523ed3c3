"""Fuzzing a live server: a real ``recordgate start`` process (SQLite in a temporary directory)
takes a stream of hostile frames on several sockets (``hostile.py``, a process of its own) while
a control client on its own socket pings it, writes a record with a write acknowledgement and
reads it back every ``CYCLE`` seconds.

Asserted: every PONG and read answer arrives within ``BOUND`` seconds of its request and every
acknowledgement within ``ACK_BOUND``; the control client hears nothing it did not ask for; the
server never dies, sends nothing undecodable nor (where it writes the JSON) non-JSON, logs no
traceback, stays under ``MAX_RSS``, shuts down cleanly on SIGTERM; and the SQLite file, read
directly, holds the last acknowledged control write.

The stream is reproducible: the test prints its seed (``RECORDGATE_FUZZ_SEED`` to set one).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect

from gateway.protocol import ConnectionAction, Message, RecordAction, Topic, decode, encode
from tests.faults.conftest import ServerProcess
from tests.fuzz import budget
from tests.fuzz.hostile import MAX_MESSAGE_SIZE

REPO = Path(__file__).resolve().parents[2]
CYCLE = 0.1
BOUND = 2.0
"""Seconds within which a PONG or a read answer must come: generous for a loaded 2-core box."""
ACK_BOUND = 5.0
"""Seconds for a write acknowledgement, which waits for an SQLite commit besides."""
MAX_RSS = 1 << 30
"""Peak resident memory of the server; a few hundred frames of amplification pass it."""
R = RecordAction


@dataclass
class Control:
    """The well-behaved client: one PING, one acknowledged write and one READ per cycle."""

    ws: ClientConnection
    name: str
    waiting: dict[tuple[str, str], asyncio.Future[Message]] = field(default_factory=dict)
    unexpected: list[Message] = field(default_factory=list)
    worst: dict[str, float] = field(default_factory=lambda: {"pong": 0.0, "read": 0.0, "ack": 0.0})
    acked: list[tuple[int, Any]] = field(default_factory=list)
    """(version, data) of every acknowledged write, in order."""
    sent: int = 0
    cycles: int = 0

    async def read_replies(self) -> None:
        async for frame in self.ws:
            assert isinstance(frame, bytes), frame
            msg = decode(frame)
            if (msg.topic, msg.action) == (Topic.CONNECTION, ConnectionAction.PONG):
                key = ("pong", "")
            elif msg.topic == Topic.RECORD and msg.action == R.READ_RESPONSE:
                key = ("read", msg.name or "")
            elif msg.topic == Topic.RECORD and msg.action == R.WRITE_ACKNOWLEDGEMENT:
                key = ("ack", msg.correlation_id or "")
            else:
                key = ("", "")
            future = self.waiting.pop(key, None)
            if future is None:
                self.unexpected.append(msg)
            else:
                future.set_result(msg)

    def expect(self, kind: str, key: str = "") -> asyncio.Future[Message]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[(kind, key)] = future
        return future

    async def send(self, msg: Message) -> None:
        self.sent += 1
        await self.ws.send(encode(msg))

    async def timed(self, kind: str, future: asyncio.Future[Message], bound: float) -> Message:
        start = asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(future, bound)
        except TimeoutError:
            raise AssertionError(f"cycle {self.cycles}: no {kind} within {bound} s") from None
        finally:
            took = asyncio.get_running_loop().time() - start
            self.worst[kind] = max(self.worst[kind], took)

    async def cycle(self, i: int) -> asyncio.Task[None]:
        """Ping, write ``{"n": i}`` with an ack, read it back; the ack is awaited in a task."""
        self.cycles += 1
        data = {"n": i}
        pong, read, ack = (
            self.expect("pong"),
            self.expect("read", self.name),
            self.expect("ack", str(i)),
        )
        await self.send(Message(Topic.CONNECTION, ConnectionAction.PING))
        await self.send(
            Message(
                Topic.RECORD,
                R.CREATEANDUPDATE,
                name=self.name,
                version=-1,
                data=json.dumps(data),
                correlation_id=str(i),
                is_write_ack=True,
            )
        )
        await self.send(Message(Topic.RECORD, R.READ, name=self.name))
        await self.timed("pong", pong, BOUND)
        got = await self.timed("read", read, BOUND)
        # Nobody else writes this record: the read sees this cycle's write, version i + 1.
        assert (got.version, json.loads(got.data or "null")) == (i + 1, data), got

        async def acknowledged() -> None:
            await self.timed("ack", ack, ACK_BOUND)
            self.acked.append((i + 1, data))

        return asyncio.create_task(acknowledged())


async def open_control(url: str, name: str) -> Control:
    ws = await connect(url, max_size=None, compression=None)
    control = Control(ws, name)
    for msg, reply in (
        (
            Message(Topic.CONNECTION, ConnectionAction.CHALLENGE, url=url, protocol_version="0.1a"),
            4,
        ),
        (Message(Topic.AUTH, 2, data='{"username": "control"}'), 3),
    ):
        await control.send(msg)
        answer = decode(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[arg-type]
        assert answer.action == reply, answer
    return control


def stored(db: Path, name: str) -> tuple[int, Any] | None:
    """What the SQLite file holds for ``name``, read with the sqlite3 module, not the server."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT version, data FROM records WHERE name = ?", (name,)).fetchone()
    return None if row is None else (row[0], json.loads(row[1]))


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


async def fuzz_live_server(tmp_path: Path, frames: int) -> dict[str, Any]:
    """Run the whole scenario; returns figures for the report. Fails on any broken promise."""
    fuzz_seed = budget.SEED if budget.SEED is not None else budget.DEFAULT_SEED
    print(f"live fuzz: RECORDGATE_FUZZ_SEED={fuzz_seed}, {frames} frames")
    db = tmp_path / "records.db"
    config = tmp_path / "fuzz.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"max_message_size": MAX_MESSAGE_SIZE},
                "storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{db}"},
                "write_behind": {"interval": 0.2},
                "rpc": {"ack_timeout": 0.2, "response_timeout": 0.5},
                "listen": {"response_timeout": 0.1},
            }
        )
    )
    server = await ServerProcess(config, tmp_path).start()
    try:
        return await storm(server, db, fuzz_seed, frames)
    finally:
        await server.kill()  # when the test failed before it could stop the server itself


async def storm(server: ServerProcess, db: Path, fuzz_seed: int, frames: int) -> dict[str, Any]:
    assert server.process is not None
    hostile_log = server.cwd / "hostile.stderr.log"
    with hostile_log.open("wb") as hostile_err:
        hostile = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fuzz.hostile",
            server.url,
            str(fuzz_seed),
            str(frames),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=hostile_err,
        )
    control: Control | None = None
    reader: asyncio.Task[None] | None = None
    acks: list[asyncio.Task[None]] = []
    try:
        assert hostile.stdout is not None
        assert b"corpus" in await asyncio.wait_for(hostile.stdout.readline(), 120)
        control = await open_control(server.url, f"control/{fuzz_seed}")
        reader = asyncio.create_task(control.read_replies())
        loop = asyncio.get_running_loop()
        finished = asyncio.ensure_future(hostile.stdout.readline())
        i = 0
        while not finished.done() or i < 20:
            start = loop.time()
            acks.append(await control.cycle(i))
            i += 1
            assert server.process.returncode is None, f"server died\n{server.log()[-3000:]}"
            await asyncio.sleep(max(0.0, CYCLE - (loop.time() - start)))
        line = await finished
        assert line, f"the hostile clients crashed:\n{hostile_log.read_text()[-5000:]}"
        result = json.loads(line)
        await asyncio.gather(*acks)
        final = await control.cycle(i)  # after the storm: the last acknowledged write
        await final
        assert control.unexpected == [], control.unexpected[:5]
        assert result["violations"] == [], json.dumps(result, indent=1)[:5000]
        rss = peak_rss(server.process.pid)
        assert rss < MAX_RSS, f"server peak RSS {rss >> 20} MB"
    finally:
        for task in [*acks, reader]:
            if task is not None:
                task.cancel()
        if control is not None:
            await control.ws.close()
        if hostile.returncode is None:
            hostile.kill()
        await hostile.wait()
    assert await server.terminate() == 0, server.log()[-3000:]
    assert "Traceback" not in server.log(), server.log()[-5000:]
    last_version, last_data = control.acked[-1]
    assert stored(db, control.name) == (last_version, last_data)
    budget.count("live", result["processed"] + control.sent)
    return {
        "seed": fuzz_seed,
        "hostile frames handled": result["processed"],
        "hostile frames sent": result["sent"],
        "replies": result["received"],
        "closes": result["closes"],
        "control cycles": control.cycles,
        "worst": control.worst,
        "peak rss MB": rss >> 20,
    }


@pytest.mark.timeout(120 + budget.frames_for("live") // 100)
async def test_hostile_clients_never_starve_the_control_client(tmp_path: Path) -> None:
    figures = await fuzz_live_server(tmp_path, budget.frames_for("live"))
    print(json.dumps(figures))
