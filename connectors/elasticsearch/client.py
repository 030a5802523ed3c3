"""The official ``elasticsearch`` client: imported by the constructor (``import_driver``: a
missing one is ``DriverMissing`` naming the extra), created by ``open()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from connectors._common import import_driver

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = ["ClientSettings", "check_driver", "hosts_of", "safe_url"]


def check_driver() -> None:
    """Import the client and its asyncio transport (aiohttp), or fail naming the extra."""
    import_driver("elasticsearch", "elasticsearch")
    import_driver("aiohttp", "elasticsearch", needed_for="the elasticsearch storage's transport")


def hosts_of(url: str) -> list[str]:
    """``http://a:9200,http://b:9200`` -> one URL per node, each ``http(s)://host:port``."""
    hosts = [part.strip() for part in url.split(",")]
    if not url.strip() or not all(hosts):
        raise ValueError(
            f"elasticsearch URL {safe_url(url)!r} must be http(s)://host:port (several nodes "
            "separated by commas)"
        )
    for host in hosts:
        parts = urlsplit(host)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise ValueError(
                f"elasticsearch URL {safe_url(host)!r} must be http(s)://host:port (several "
                "nodes separated by commas)"
            )
    return hosts


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    shown = []
    for host in url.split(","):
        parts = urlsplit(host.strip())
        try:
            parts.port  # noqa: B018 - parses the port, raising ValueError if malformed
        except ValueError:
            return "<unparsable url>"
        if parts.password is not None:
            netloc = f"{parts.username}:***@{parts.hostname}"
            if parts.port is not None:
                netloc += f":{parts.port}"
            host = urlunsplit(parts._replace(netloc=netloc))
        shown.append(host.strip())
    return ",".join(shown)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    hosts: list[str]
    timeout: float
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True

    def create(self) -> AsyncElasticsearch:
        """A new client (no I/O until its first request)."""
        from elasticsearch import AsyncElasticsearch

        options: dict[str, Any] = {
            "request_timeout": self.timeout,
            # The flusher retries with backoff; a retry inside the client would eat the timeout.
            "max_retries": 0,
            "retry_on_timeout": False,
            "verify_certs": self.verify_certs,
        }
        if self.api_key:
            options["api_key"] = self.api_key
        if self.ca_certs:
            options["ca_certs"] = self.ca_certs
        return AsyncElasticsearch(self.hosts, **options)
