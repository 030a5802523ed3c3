"""The names of a cluster's keys and channels in Redis.

Invariant: every key carries the hash tag ``{prefix}``, so each script touches keys of one
slot only, as Redis Cluster requires. ``prefix`` has no braces (config validation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    @property
    def members(self) -> str:
        """Set of the ids of registered nodes."""
        return f"{self.tag}:members"

    def heartbeat(self, node_id: str) -> str:
        """String with a TTL: present while ``node_id`` is alive."""
        return f"{self.tag}:node:{node_id}"

    @property
    def presence(self) -> str:
        """Hash user -> number of nodes the user is online on."""
        return f"{self.tag}:presence"

    def node_presence(self, node_id: str) -> str:
        """Set of the users online on ``node_id``."""
        return f"{self.tag}:presence:{node_id}"

    @property
    def bus(self) -> str:
        """The channel of events and presence notices."""
        return f"{self.tag}:bus"

    def node_channel(self, node_id: str) -> str:
        """The channel of messages directed to ``node_id`` (RPC between nodes)."""
        return f"{self.tag}:n:{node_id}"

    def offers(self, kind: str, node_id: str) -> str:
        """Set of what ``node_id`` offers of ``kind`` (``rpc``: the RPC names it provides)."""
        return f"{self.tag}:{kind}:{node_id}"

    def record(self, name: str) -> str:
        """Hash of a record's cluster state (``records``). The record's part is a SHA-1 of its
        name: names may hold braces, and a fixed-length key whatever the name's length."""
        return f"{self.tag}:r:{hashlib.sha1(name.encode()).hexdigest()}"

    def lease(self, record_key: str) -> str:
        """String with a TTL: the node flushing the record of ``record_key`` now."""
        return f"{self.tag}:lease:{record_key.rpartition(':')[2]}"

    @property
    def position(self) -> str:
        """Counter of record changes, raised by every commit: each bus message of a change
        carries its value, so a node knows how far its bus has come (``records``)."""
        return f"{self.tag}:pos"

    @property
    def dirty(self) -> str:
        """Sorted set of record keys with versions not yet in storage, scored by the time
        (ms, Redis clock) of their oldest such version."""
        return f"{self.tag}:dirty"

    def wanted(self, topic: str, node_id: str) -> str:
        """Set of the names with subscribers on ``node_id`` that a listen pattern matches
        (``topic``: ``e`` events, ``r`` records)."""
        return f"{self.tag}:lw:{topic}:{node_id}"

    def wanted_counts(self, topic: str) -> str:
        """Hash name -> on how many nodes it has subscribers (names in ``wanted`` sets)."""
        return f"{self.tag}:lwc:{topic}"

    def coordinators(self, topic: str) -> str:
        """Hash name -> the node that runs its listen search and holds its provider."""
        return f"{self.tag}:lwo:{topic}"

    def provided(self, topic: str) -> str:
        """Hash name -> 1 while the name has a provider (records: for hasProvider)."""
        return f"{self.tag}:lwp:{topic}"
