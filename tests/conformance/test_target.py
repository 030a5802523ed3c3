"""``conformance.target``: aiming a connector's URL at the suite's own servers, for URLs of every
backend (the defaults; a connector's ``url_for``/``server_address`` hooks take precedence)."""

from __future__ import annotations

import pytest

from conformance.target import server_address, url_for
from connectors.memory import MemoryConnector


class Plain(MemoryConnector):
    """No hooks of its own: the defaults apply."""


class Hooked(MemoryConnector):
    @classmethod
    def url_for(cls, url: str, host: str, port: int) -> str:
        return f"hooked://{host}:{port}"

    @classmethod
    def server_address(cls, url: str) -> str:
        return "/run/hooked.sock"


@pytest.mark.parametrize(
    ("url", "aimed", "address"),
    [
        ("redis://:pw@db.example:6380/0", "redis://:pw@127.0.0.1:4321/0", ("db.example", 6380)),
        ("redis://db.example", "redis://127.0.0.1:4321", ("db.example", 6379)),
        ("rediss://u:p@db.example/1", "rediss://u:p@127.0.0.1:4321/1", ("db.example", 6379)),
        (
            "mongodb://u:p@mongo.example/app?authSource=admin",
            "mongodb://u:p@127.0.0.1:4321/app?authSource=admin",
            ("mongo.example", 27017),
        ),
        (
            "http://elastic:pw@es.example:9200",
            "http://elastic:pw@127.0.0.1:4321",
            ("es.example", 9200),
        ),
        ("https://es.example/", "https://127.0.0.1:4321/", ("es.example", 443)),
        (
            "rethinkdb://admin@r.example/test",
            "rethinkdb://admin@127.0.0.1:4321/test",
            ("r.example", 28015),
        ),
        (
            "postgresql+asyncpg://u:p@pg.example/db",
            "postgresql+asyncpg://u:p@127.0.0.1:4321/db",
            ("pg.example", 5432),
        ),
        (
            "mysql+asyncmy://root@my.example/test?charset=utf8mb4",
            "mysql+asyncmy://root@127.0.0.1:4321/test?charset=utf8mb4",
            ("my.example", 3306),
        ),
        ("redis://[::1]:6379/0", "redis://127.0.0.1:4321/0", ("::1", 6379)),
        ("memory://", None, None),
        ("sqlite+aiosqlite:///x.db", None, None),
        ("custom://host.example/x", "custom://127.0.0.1:4321/x", None),  # port unknown
        ("mongodb://a:1,b:2/db", "mongodb://127.0.0.1:4321/db", None),  # several hosts
    ],
)
def test_default_address_rewriting(url: str, aimed: str | None, address: object) -> None:
    assert url_for(Plain, url, "127.0.0.1", 4321) == aimed
    assert server_address(Plain, url) == address


def test_ipv6_address_in_brackets() -> None:
    assert url_for(Plain, "redis://db:6379/0", "::1", 4321) == "redis://[::1]:4321/0"


def test_hooks_take_precedence() -> None:
    assert url_for(Hooked, "redis://db:6379", "127.0.0.1", 9) == "hooked://127.0.0.1:9"
    assert server_address(Hooked, "redis://db:6379") == "/run/hooked.sock"
