"""``rethinkdb://[user[:password]@]host[:port][/database]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["DEFAULT_DATABASE", "DEFAULT_PORT", "Address", "parse_url"]

DEFAULT_PORT = 28015
DEFAULT_DATABASE = "recordgate"


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int
    database: str
    user: str = "admin"
    password: str = field(default="", repr=False)  # never in logs or reprs

    @property
    def safe(self) -> str:
        """The address without the password, for messages."""
        return f"rethinkdb://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> Address:
    """``ValueError`` for anything but a ``rethinkdb://`` URL with a host."""
    parts = urlsplit(url)
    if parts.scheme != "rethinkdb":
        raise ValueError(f"a RethinkDB URL starts with rethinkdb://, got {parts.scheme!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"bad port in RethinkDB URL: {exc}") from exc
    if not parts.hostname:
        raise ValueError("a RethinkDB URL needs a host: rethinkdb://host:28015/db")
    database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    return Address(
        host=parts.hostname,
        port=port,
        database=database,
        user=unquote(parts.username) if parts.username else "admin",
        password=unquote(parts.password) if parts.password else "",
    )
