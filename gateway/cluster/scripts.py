"""Lua scripts run atomically in Redis. Each one touches keys of one slot (see ``keys``).

Presence notices are published from inside the scripts, so every node receives them in the
order Redis ran the scripts: a JOIN never overtakes the LEAVE before it.
Their bus messages are ``["", kind, user]`` (see ``bus``).
"""

from __future__ import annotations

__all__ = ["HEARTBEAT", "JOIN", "LEAVE", "OFFER", "REAP", "WITHDRAW"]

HEARTBEAT = """
-- KEYS: heartbeat. ARGV: ttl ms. 1 if extended; 0 if gone (this node was presumed dead).
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""

_LEAVE_BODY = """
local function leave(node_set, counts, bus, user)
  if redis.call('SREM', node_set, user) == 1 then
    local n = redis.call('HINCRBY', counts, user, -1)
    if n <= 0 then
      redis.call('HDEL', counts, user)
      redis.call('PUBLISH', bus, cjson.encode({'', 'l', user}))
    end
  end
end
"""

JOIN = """
-- KEYS: node presence set, presence counts, bus. ARGV: user.
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then
    redis.call('PUBLISH', KEYS[3], cjson.encode({'', 'j', ARGV[1]}))
  end
end
return 1
"""

LEAVE = (
    _LEAVE_BODY
    + """
-- KEYS: node presence set, presence counts, bus. ARGV: user.
leave(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 1
"""
)

REAP = (
    _LEAVE_BODY
    + """
-- KEYS: node presence set, presence counts, bus, members, heartbeat, then the node's offer
-- sets (``OFFER``). ARGV: node id.
-- Removes a node and everything it held. Idempotent: a second run finds nothing. The offers
-- go without notices: every node drops a dead node's offers when its own sweep finds it dead.
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  leave(KEYS[1], KEYS[2], KEYS[3], user)
end
for i = 5, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[1])
return redis.call('SREM', KEYS[4], ARGV[1])
"""
)

OFFER = """
-- KEYS: the node's offer set of a kind, bus. ARGV: name, notice kind, node id.
-- The node offers ``name`` (an RPC it provides); the others hear ``[kind '+', name, node]``.
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', KEYS[2], cjson.encode({'', ARGV[2] .. '+', ARGV[1], ARGV[3]}))
end
return 1
"""

WITHDRAW = """
-- KEYS: the node's offer set of a kind, bus. ARGV: name, notice kind, node id.
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', KEYS[2], cjson.encode({'', ARGV[2] .. '-', ARGV[1], ARGV[3]}))
end
return 1
"""
