"""Key names of the Redis layout: what a data team types into ``redis-cli``.

With the default prefix ``recordgate``, record ``user/42`` is stored as::

    {recordgate}:record:user/42      hash: name, collection, version, data (JSON text), updated_at
    {recordgate}:collection:user     sorted set of the collection's record names, all scores 0
    {recordgate}:names               sorted set of every record name, all scores 0
    {recordgate}:collections         sorted set of the collections holding records, all scores 0
    {recordgate}:fence:user/42       string: the highest fence applied to the name (decimal)

A fence key exists only for names written with a fence (a cluster's writes, see
``connectors/base.py``); it outlives the record's hash (a tombstone of a deleted name) and is in
no index, so listing and reading records never meets it.

Invariants:

* A key is the prefix part, a fixed infix and then the record (or collection) name verbatim, as
  UTF-8 bytes. Redis keys are binary-safe, so any name (``:``, ``{``, ``}``, spaces, unicode,
  kilobytes) is a key, and two names never share one: the infixes differ before the name starts.
* Every key begins with the hash tag ``{prefix}``: Redis Cluster hashes only the text between the
  first ``{`` and the next ``}``, so all keys of one store fall in one slot whatever the names
  hold, and one Lua script may touch them all (a cluster refuses a script across slots).
* Sorted sets hold every member at score 0, so their order is the members' byte order, which
  for UTF-8 is code-point order: ``ZRANGEBYLEX`` scans them in name order, never ``KEYS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "Layout", "check_prefix"]

DEFAULT_PREFIX = "recordgate"

# No glob characters (drop() matches keys by pattern), no braces (the hash tag), no spaces.
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError(f"option 'prefix' must be 1-100 letters, digits or '_.:-', got {prefix!r}")
    return prefix


@dataclass(frozen=True, slots=True)
class Layout:
    """Key names for one store (one prefix)."""

    prefix: str

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    @property
    def names(self) -> bytes:
        return f"{self.tag}:names".encode()

    @property
    def collections(self) -> bytes:
        return f"{self.tag}:collections".encode()

    @property
    def record_prefix(self) -> bytes:
        return f"{self.tag}:record:".encode()

    @property
    def collection_prefix(self) -> bytes:
        return f"{self.tag}:collection:".encode()

    @property
    def fence_prefix(self) -> bytes:
        return f"{self.tag}:fence:".encode()

    @property
    def pattern(self) -> bytes:
        """A ``SCAN MATCH`` pattern for every key of the store."""
        return f"{self.tag}:*".encode()

    def record(self, name: str) -> bytes:
        return self.record_prefix + name.encode()

    def collection(self, collection: str) -> bytes:
        return self.collection_prefix + collection.encode()

    def fence(self, name: str) -> bytes:
        return self.fence_prefix + name.encode()
