"""Redis connector (redis-py's ``redis.asyncio``): a hash per record, sorted sets as indexes.

Importing this package does not import redis-py; ``open()`` does.
"""

from __future__ import annotations

from connectors.redis.connector import RedisConnector
from connectors.redis.queries import DATA_TEAM_COMMANDS

__all__ = ["DATA_TEAM_COMMANDS", "RedisConnector"]
