from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.cluster.nodes import ClusterNodes
from tests.redis_server import RedisServer


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server without AOF (a restart empties it, like a lost Redis)."""
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.kill()


@pytest.fixture
def cluster(tmp_path: Path, redis: RedisServer) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes(tmp_path, redis)
    yield nodes
    nodes.stop()
