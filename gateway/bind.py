"""The listening socket for ``server.host``: ``::`` means every interface, IPv4 too.

asyncio's and uvloop's ``create_server`` set ``IPV6_V6ONLY`` on every IPv6 socket, so ``::``
would listen on IPv6 alone and refuse IPv4 clients, unlike most servers (nginx ``[::]``,
Node's ``listen('::')``, Go). For an unspecified IPv6 address this module makes one
dual-stack socket instead (IPv4 clients arrive as ``::ffff:a.b.c.d``), where the OS allows
it; any other host is left to ``create_server``. :func:`client_address` turns such a peer back
into the IPv4 address it is, so nothing past the socket sees which host was configured.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

__all__ = ["authority", "client_address", "dual_stack_socket"]

log = logging.getLogger(__name__)


def _unspecified_ipv6(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 6 and address.is_unspecified


def dual_stack_socket(host: str, port: int) -> socket.socket | None:
    """A socket bound to ``[::]:port`` accepting IPv4 and IPv6, for ``host`` ``::`` (any
    spelling); None for other hosts, or where the OS has no dual-stack sockets (then ``::``
    listens on IPv6 alone, and a warning says so)."""
    if not _unspecified_ipv6(host):
        return None
    if not socket.has_dualstack_ipv6():
        log.warning("server.host %s: this OS has no dual-stack sockets; IPv6 only", host)
        return None
    # SO_REUSEADDR as create_server sets it; listen() is called again by create_server.
    return socket.create_server(
        (host, port), family=socket.AF_INET6, dualstack_ipv6=True, reuse_port=False
    )


def client_address(peer: str) -> str:
    """``peer`` as the client's own address: an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``,
    an IPv4 client of the dual-stack socket) is ``a.b.c.d``; anything else as it is."""
    if not peer.startswith("::ffff:") and not peer.startswith("::FFFF:"):
        return peer  # the common case, without parsing
    try:
        mapped = ipaddress.IPv6Address(peer).ipv4_mapped
    except ValueError:
        return peer
    return peer if mapped is None else str(mapped)


def authority(host: str, port: int) -> str:
    """``host:port`` as URLs write it: an IPv6 literal in brackets (``[::]:6020``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
