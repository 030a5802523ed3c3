"""The connector under test: class, URL and options, resolved once per session."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connectors.base import Connector
from connectors.registry import load_connector_class

__all__ = ["ConnectorTarget", "parse_options", "unreachable_url"]


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
        target = cls(spec, connector_cls, url, options, owned)
        target.create()  # no I/O before open(): this only checks the URL and options
        return target

    def create(self, **overrides: Any) -> Connector:
        options = {**self.options, **overrides}
        return self.cls(self.url, **options)  # type: ignore[call-arg]

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


def unreachable_url(cls: type[Connector], url: str) -> str | None:
    """``url`` pointed at a local port nobody listens on; ``None`` if it has no network address.

    A connector may define ``unreachable_url(url)`` as a classmethod to do this itself.
    """
    custom = getattr(cls, "unreachable_url", None)
    if callable(custom):
        result = custom(url)
        return None if result is None else str(result)
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    with socket.socket() as sock:  # the kernel hands out a free port; closing frees it again
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))
