"""Several recordgate nodes as one server, over Redis (docs/cluster.md).

``node`` ties the parts together and is all the server uses; ``keys`` names every key and
channel, ``scripts`` holds the Lua scripts, ``membership`` the heartbeats and the reaping of
dead nodes, ``bus`` the channel that carries events and presence notices between nodes,
``presence`` the cluster-wide presence. ``redis.asyncio`` is imported only when a node starts.
"""

from __future__ import annotations

from .node import ClusterNode, ClusterStats

__all__ = ["ClusterNode", "ClusterStats"]
