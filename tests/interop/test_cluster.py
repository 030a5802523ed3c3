"""The official JS client spread over three real cluster nodes (``recordgate start`` processes
sharing a private redis-server and PostgreSQL): events, presence and the refusal of records."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.cluster.nodes import ClusterNodes
from tests.interop.conftest import scenario_runner
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]


def test_events_and_presence_across_three_nodes(node: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()
    nodes = ClusterNodes(tmp_path, redis)
    try:
        nodes.start(3)
        run = scenario_runner(node, nodes[0].url, nodes[0].log)
        r = run("cluster", ",".join(n.url for n in nodes))
    finally:
        nodes.stop()
        redis.kill()
    user = f"{r['id']}-user"
    # every emit once at each subscriber: the two others' through the cluster, its own from
    # its client (the official client calls its own subscribers); a server echo would double it
    assert r["events"] == [[0, 1, 2]] * 3
    # one join however many nodes the user is on; the leave only after its last connection
    assert r["presenceEvents"] == [[user, True], [user, False]]
    assert r["queries"] == [{"ok": {user: True, f"{r['id']}-nobody": False}}] * 3
    others = [f"{r['id']}-{name}" for name in ("sub1", "sub2", "asker")]
    assert r["getAll"] == sorted([user, *others])  # never the asking watcher (sub0)
    assert r["afterFirstClose"] == {"ok": {user: True}}
    assert r["afterSecondClose"] == {"ok": {user: False}}
    denied = [e for e in r["errors"] if e["event"] == "MESSAGE_DENIED"]
    assert denied and all(e["topic"] == "RECORD" for e in denied), r["errors"]
    assert [e for e in r["errors"] if e["event"] != "MESSAGE_DENIED"] == []
