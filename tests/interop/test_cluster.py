"""The official JS client spread over three real cluster nodes (``recordgate start`` processes
sharing a private redis-server and PostgreSQL): events, presence, records and RPC (with a
node SIGKILLed under requests in flight)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.cluster.nodes import ClusterNodes, wait_until
from tests.interop.conftest import HERE, scenario_runner
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]


def test_events_presence_and_records_across_three_nodes(node: str, tmp_path: Path) -> None:
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
    # records: 20 acked writes from node 2, every node's live record at version 20 having seen
    # each version once, in order (versions 1..20; 0 was the create)
    assert r["acks"] == [{"ok": None}] * 20
    final = {"n": 20, "s": "ü{x}"}
    assert r["live"] == [[20, final]] * 3
    assert all(seen == list(range(1, 21)) for seen in r["versions"]), r["versions"]
    # same-tick writers on nodes 0 and 1: every round ends with one version and one value on
    # all three nodes, and the server answers it alike from every node
    versions = [version for version, _ in r["rounds"]]
    # each round one loser, whose client merged twice: the winner's update, then the
    # VERSION_EXISTS answering its write (the scenario waits for both before the next round)
    assert r["roundMerges"] == 2 * len(r["rounds"]) == 12
    assert versions == sorted(set(versions)) and versions[0] > 20
    assert r["agreed"] == [r["agreed"][0]] * 3
    version, data = r["agreed"][0]
    assert r["server"] == [[data, version, True]] * 3
    assert r["mergeCalls"] >= 1  # the loser's VERSION_EXISTS went to its merge strategy
    both = {"fromA": True, "fromB": True}
    assert [data for _, data in r["mergedEverywhere"]] == [both] * 3
    assert r["mergedServer"] == both
    assert r["mergedHead"] == max(version for version, _ in r["mergedEverywhere"])
    assert r["list"] == ["from-a", "from-b"]
    assert r["deleted"] == {"ok": None}
    assert r["deletedOn"] == [1, 2]
    assert r["recreated"] == {"ok": None}
    assert r["afterDelete"] == [{"life": 2}] * 3
    assert r["errors"] == []


def _scenario_with_kill(
    node: str, nodes: ClusterNodes, name: str, cue: str, victim: int
) -> dict[str, Any]:
    """Run ``scenarios/<name>.js`` over ``nodes``; when it prints ``cue``, SIGKILL node
    ``victim`` and tell the scenario. Returns its JSON."""
    env = {**os.environ, "SCENARIO_DEADLINE_MS": "90000"}
    client = subprocess.Popen(
        [
            node,
            str(HERE / "scenarios" / f"{name}.js"),
            nodes[0].url,
            ",".join(n.url for n in nodes),
        ],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        line = client.stdout.readline().strip()
        assert line == cue, line + client.stdout.read() + nodes[0].log_text()
        nodes[victim].kill()
        client.stdin.write("killed\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
    logs = "\n".join(f"--- {n.name} ---\n{n.log_text()}" for n in nodes)
    assert client.returncode == 0, f"{out}\n{err}\n{logs}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_rpc_across_three_nodes(node: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()
    nodes = ClusterNodes(tmp_path, redis, extra="rpc:\n  ack_timeout: 6\n  response_timeout: 12\n")
    try:
        nodes.start(3)
        r = _scenario_with_kill(node, nodes, "cluster_rpc", "KILL-NODE2", 2)
        metrics = nodes[0].metrics()
    finally:
        nodes.stop()
        redis.kill()
    # requested on node 0, served on node 2; data of every shape through two nodes
    assert r["add"] == {"ok": 5}
    assert r["addEcho"] == [
        {"ok": "ü{x}"},
        {"ok": "7"},
        {"ok": "null"},
        {"ok": "1,[object Object]"},
    ]
    # every provider anywhere asked exactly once, then NO_RPC_PROVIDER
    assert r["rejects"] == {"error": "NO_RPC_PROVIDER"}
    calls = r["calls"]
    assert (calls["rejects1"], calls["rejects2a"], calls["rejects2b"]) == (1, 1, 1)
    # the local provider first, then whichever node: node 2 answers every time
    assert r["mixed"] == [{"ok": "node2"}] * 3
    assert calls["mixed0"] == 3 and calls["mixed2"] == 3 and calls.get("mixed1", 0) <= 3
    assert r["noProvider"] == {"error": "NO_RPC_PROVIDER"}
    # node 2 handed the request to its second provider: the deadline restarted (7 s > 6 s)
    assert r["slowDecider"]["ok"] == "decided" and r["slowDecisions"] == 2
    assert r["acceptTimeout"]["error"] == "ACCEPT_TIMEOUT"
    assert r["responseTimeout"]["error"] == "RESPONSE_TIMEOUT"
    assert 5000 < r["acceptTimeout"]["ms"] < 11000  # ack_timeout 6 s, not another deadline
    assert r["responseTimeout"]["ms"] > 11000  # response_timeout 12 s
    assert r["beforeUnprovide"] == {"ok": "still here"}
    assert r["afterUnprovide"] == {"error": "NO_RPC_PROVIDER"}
    # node 2 killed: the unaccepted request went to node 1's provider, the accepted one failed
    # when node 2 was found dead (1.5 s node_timeout), long before its 12 s response_timeout
    assert r["held"]["ok"] == "rerouted to node1", r["held"]
    assert r["accepted"]["error"] == "RESPONSE_TIMEOUT", r["accepted"]
    assert r["accepted"]["ms"] < 8000 and r["held"]["ms"] < 8000
    print(
        f"requests at the killed node answered after {r['held']['ms']} / {r['accepted']['ms']} ms"
    )
    # and node 2's providers are chosen no more
    assert r["afterKill"] == [{"ok": "node1"}] * 10
    assert metrics["recordgate_cluster_rpc_remote_open"] == 0
    errors = [e for e in r["errors"] if e["topic"] != "CONNECTION"]
    assert errors == [], errors


def test_listening_across_three_nodes(node: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()
    nodes = ClusterNodes(tmp_path, redis)
    try:
        nodes.start(3)
        r = _scenario_with_kill(node, nodes, "cluster_listen", "KILL-NODE1", 1)
        # names node 1 coordinated are being taken over: nothing stays pending for Redis
        wait_until(
            "node 0's listen changes to reach Redis",
            lambda: nodes[0].metrics()["recordgate_cluster_listen_pending"] == 0,
        )
    finally:
        nodes.stop()
        redis.kill()
    # offered on node 1 a name subscribed on node 2; its emit reached node 2's subscriber;
    # node 0 subscribing too is no second offer; REMOVED only after the last one anywhere left
    assert len(r["a"]["found"]) == 1 and r["a"]["found"][0].endswith("/a/x")
    assert r["a"]["received"] == [f"provided {r['a']['found'][0]}"]
    assert r["a"]["stoppedWhileSubscribed"] == []
    assert r["a"]["stopped"] == r["a"]["found"] and r["a"]["foundAfter"] == 1
    # a subscription made before the listener arrived, on another node
    assert len(r["b"]) == 1 and r["b"][0].endswith("/b/early")
    # two listeners on two nodes, six names subscribed on three nodes: one provider each,
    # offered once (the first asked accepts)
    assert r["c"] == [{"offered": 1, "active": 1}] * 6
    # records: offered on node 1, subscribers on nodes 2 and 0 (the later one too) saw a
    # provider, REMOVED once both discarded
    assert len(r["r"]["found"]) == 1 and r["r"]["found"][0].endswith("/r/x")
    assert r["r"]["stoppedWhileSubscribed"] == [] and r["r"]["stopped"] == r["r"]["found"]
    # the provider's node killed: the listener on node 2 is offered the name
    assert r["dBefore"] == {"1": 1, "2": r["dBefore"]["2"]} and r["dBefore"]["2"] <= 1
    assert r["dAfter"]["names"][-1].endswith("/d/z")
    assert r["dAfter"]["ms"] < 8000
    print(f"the name was offered again {r['dAfter']['ms']} ms after its provider's node died")
    errors = [e for e in r["errors"] if e["topic"] != "CONNECTION"]
    assert errors == [], errors
