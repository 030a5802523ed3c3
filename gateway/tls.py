"""TLS for the server's port (WebSockets and HTTP alike): ``server.tls: {cert, key, ...}``.

The context is built once at startup, so an unreadable or mismatched certificate or key is a
``ConfigError`` naming the file, not a failure at the first client. TLS 1.2 is the minimum.
Client certificates: ``client_cert: none`` (default), ``optional`` (verified when sent) or
``required``, against the CA bundle ``ca``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from .exceptions import ConfigError

__all__ = ["CLIENT_CERT_MODES", "TlsConfig", "server_context"]

CLIENT_CERT_MODES = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    cert: str
    """PEM certificate chain (the server's certificate first)."""
    key: str
    """PEM private key of the certificate."""
    ca: str = ""
    """PEM CA bundle that client certificates must chain to (needed with ``client_cert``)."""
    client_cert: str = "none"
    """``none``, ``optional`` or ``required``."""

    def __post_init__(self) -> None:
        if self.client_cert not in CLIENT_CERT_MODES:
            raise ConfigError("server.tls.client_cert must be none, optional or required")
        if self.client_cert != "none" and not self.ca:
            raise ConfigError("server.tls.ca is needed to check client certificates")


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("cert", tls.cert), ("key", tls.key), ("ca", tls.ca)):
        if path and not Path(path).is_file():
            raise ConfigError(f"server.tls.{what}: no such file {path}")
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"server.tls: cannot use certificate {tls.cert} with key {tls.key}: {exc}"
        ) from exc
    if tls.client_cert != "none":
        try:
            context.load_verify_locations(cafile=tls.ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"server.tls.ca: cannot load {tls.ca}: {exc}") from exc
        context.verify_mode = CLIENT_CERT_MODES[tls.client_cert]
    return context
