"""The official ``elasticsearch`` client: checked for at construction, imported at ``open()``."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from gateway.exceptions import ConfigError

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

__all__ = ["ClientSettings", "check_driver", "safe_url"]

EXTRA = "recordgate[elasticsearch]"


def check_driver() -> None:
    """A missing driver is one clear configuration error naming the extra to install."""
    for module in ("elasticsearch", "aiohttp"):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"the elasticsearch connector needs the {module!r} package: pip install '{EXTRA}'"
            )


def hosts_of(url: str) -> list[str]:
    """``http://a:9200,http://b:9200`` -> one URL per node; each must be http(s)."""
    hosts = [part.strip() for part in url.split(",") if part.strip()]
    if not hosts:
        raise ValueError("the elasticsearch URL is empty; expected e.g. http://127.0.0.1:9200")
    for host in hosts:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"elasticsearch URL {safe_url(host)!r} must be http(s)://host:port (nodes "
                "separated by commas)"
            )
    return hosts


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs."""
    shown = []
    for host in url.split(","):
        parts = urlsplit(host.strip())
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
