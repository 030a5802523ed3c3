"""The connector under test: class, URL and options, resolved once per session."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connectors.base import Connector
from connectors.registry import load_connector_class

__all__ = [
    "Address",
    "ConnectorTarget",
    "free_port",
    "parse_options",
    "server_address",
    "url_for",
]


@dataclass(slots=True)
class ConnectorTarget:
    spec: str
    cls: type[Connector]
    url: str
    options: dict[str, Any] = field(default_factory=dict)
    owned_namespace: bool = False
    """True when the suite chose the namespace (e.g. a table) and must drop it at the end."""

    @classmethod
    def resolve(cls, spec: str, url: str | None, raw_options: list[str]) -> ConnectorTarget:
        connector_cls = load_connector_class(spec)
        if url is None:
            url = getattr(connector_cls, "default_url", None)
            if url is None:
                raise ValueError(f"connector {spec!r} has no default URL; pass --connector-url")
        options = parse_options(raw_options)
        namespace = getattr(connector_cls, "namespace_option", None)
        owned = False
        if isinstance(namespace, str) and namespace not in options:
            # A fresh namespace per session keeps runs apart and proves open() creates schema.
            options[namespace] = f"rg_conformance_{uuid.uuid4().hex[:12]}"
            owned = True
        if owned and not callable(getattr(connector_cls, "drop", None)):
            raise ValueError(
                f"connector {spec!r} declares namespace_option {namespace!r} but has no "
                "drop() to remove the namespace the suite creates"
            )
        target = cls(spec, connector_cls, url, options, owned)
        target.create()  # no I/O before open(): this only checks the URL and options
        return target

    def create(self, url: str | None = None, **overrides: Any) -> Connector:
        options = {**self.options, **overrides}
        return self.cls(url or self.url, **options)  # type: ignore[call-arg]

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(getattr(self.cls, "capabilities", frozenset()))


def parse_options(raw: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--connector-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = value
    return options


DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "mongodb": 27017,
    "http": 80,
    "https": 443,
    "rethinkdb": 28015,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mariadb": 3306,
}
"""Default ports by URL scheme (the part before ``+``), for URLs that name none."""

Address = tuple[str, int] | str
"""A TCP ``(host, port)`` or a unix socket path."""


def url_for(cls: type[Connector], url: str, host: str, port: int) -> str | None:
    """``url`` aimed at ``host:port`` (the connector's ``url_for`` hook if it has one); ``None``
    if the URL names no server."""
    custom = getattr(cls, "url_for", None)
    if callable(custom):
        result = custom(url, host, port)
        return None if result is None else str(result)
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets
    netloc = f"{userinfo}@{address}" if userinfo else address
    return urlunsplit(parts._replace(netloc=netloc))


def server_address(cls: type[Connector], url: str) -> Address | None:
    """Where the server of ``url`` listens (the connector's ``server_address`` hook if it has
    one); ``None`` if the URL names no server or its port cannot be known."""
    custom = getattr(cls, "server_address", None)
    if callable(custom):
        result = custom(url)
        if result is None or isinstance(result, str):
            return result
        host, port = result
        return str(host), int(port)
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:  # several hosts, or not a port
        return None
    if port is None:
        port = DEFAULT_PORTS.get(parts.scheme.partition("+")[0].lower())
    return None if port is None else (parts.hostname, port)


def free_port() -> int:
    """A local TCP port nobody listens on (the kernel hands out a free one; closing frees it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
