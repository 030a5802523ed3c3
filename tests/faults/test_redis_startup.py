"""``recordgate start`` on a Redis without the append-only file: refused in one line naming the
option that accepts the risk; with that option, it runs and says so in its log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.event_loop import start_args
from tests.faults.conftest import RECORDGATE, acks, write
from tests.redis_server import RedisServer


def test_a_redis_without_aof_is_refused_at_startup(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()
    try:
        config = tmp_path / "cfg.yaml"
        config.write_text(yaml.safe_dump({"storage": {"type": "redis", "url": redis.url}}))
        command = [RECORDGATE, "start", "-c", str(config), "--host", "127.0.0.1", "--port", "0"]
        done = subprocess.run(
            [*command, *start_args()],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        redis.kill()
    assert done.returncode == 1, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("recordgate:")]
    assert "appendonly no" in line and "durability: none" in line
    assert "Traceback" not in done.stderr


async def test_durability_none_starts_and_names_the_risk_in_the_log(
    tmp_path: Path, start_server, peers
) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()
    try:
        storage = {"type": "redis", "url": redis.url, "durability": "none"}
        server = await start_server({"storage": storage})
        peer = await peers(server.url)
        await peer.send(write("doc/1", {"x": 1}, ack="a"))
        assert await acks(peer, 1) == {"a"}
        log = server.log()
        assert "WARNING connectors.redis.durability" in log
        assert "durability=none" in log and "appendonly no" in log
    finally:
        redis.kill()
