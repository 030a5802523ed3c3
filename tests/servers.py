"""Database servers for tests: skip when one is absent, fail instead under CI.

``RECORDGATE_REQUIRE_SERVERS=1`` (set by ``.ci/run``) turns a missing server into a failure, so a
green CI proves every backend while ``pytest`` still passes on a bare machine.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

import pytest

__all__ = [
    "MARIADB_SOCKET",
    "MARIADB_URL",
    "POSTGRES_URL",
    "require_mariadb",
    "require_mariadb_socket",
    "require_postgres",
    "require_server",
    "servers_required",
]

POSTGRES_URL = os.environ.get(
    "RECORDGATE_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("RECORDGATE_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
MARIADB_SOCKET = os.environ.get("RECORDGATE_MARIADB_SOCKET", "/run/mysqld/mysqld.sock")


def servers_required() -> bool:
    return os.environ.get("RECORDGATE_REQUIRE_SERVERS") == "1"


@functools.cache
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_server(what: str, url: str, default_port: int) -> str:
    """``url`` if its host:port accepts TCP connections; else skip (or fail under CI)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    if _reachable(host, port):
        return url
    message = f"{what} is not reachable at {host}:{port}"
    if servers_required():
        pytest.fail(f"{message} (RECORDGATE_REQUIRE_SERVERS=1)")
    pytest.skip(f"{message}; set RECORDGATE_REQUIRE_SERVERS=1 to make this a failure")


def require_postgres() -> str:
    """The SQLAlchemy URL of the test PostgreSQL (``RECORDGATE_POSTGRES_URL`` overrides)."""
    return require_server("PostgreSQL", POSTGRES_URL, 5432)


def require_mariadb() -> str:
    """The SQLAlchemy URL of the test MariaDB (``RECORDGATE_MARIADB_URL`` overrides)."""
    return require_server("MariaDB", MARIADB_URL, 3306)


def require_mariadb_socket() -> str:
    """A URL of the test MariaDB through its unix socket (``RECORDGATE_MARIADB_SOCKET``)."""
    require_mariadb()
    if not os.path.exists(MARIADB_SOCKET):
        message = f"MariaDB socket {MARIADB_SOCKET} does not exist"
        if servers_required():
            pytest.fail(f"{message} (RECORDGATE_REQUIRE_SERVERS=1)")
        pytest.skip(message)
    return f"mysql+asyncmy://root@localhost/test?unix_socket={MARIADB_SOCKET}"
