"""Lua scripts run atomically in Redis. Each one touches keys of one slot (see ``keys``).

Presence notices are published from inside the scripts, so every node receives them in the
order Redis ran the scripts: a JOIN never overtakes the LEAVE before it.
Their bus messages are ``["", kind, user]`` (see ``bus``).
"""

from __future__ import annotations

__all__ = [
    "HEARTBEAT",
    "JOIN",
    "LEAVE",
    "OFFER",
    "PROVIDED",
    "REAP",
    "TAKE_OVER",
    "UNWANT",
    "WANT",
    "WITHDRAW",
]

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
-- KEYS: node presence set, presence counts, bus, members, heartbeat; then ARGV[2] offer sets
-- (``OFFER``); then for each listen topic: the node's wanted set, wanted counts, coordinators,
-- provided flags.
-- ARGV: node id, number of offer sets.
-- Removes a node and everything it held. Idempotent: a second run finds nothing. Offers and
-- coordinators go without notices: every node drops a dead node's offers, and takes over the
-- names it coordinated, when its own sweep finds it dead.
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  leave(KEYS[1], KEYS[2], KEYS[3], user)
end
local offers = tonumber(ARGV[2])
for i = 6, 5 + offers do
  redis.call('DEL', KEYS[i])
end
local i = 6 + offers
while i + 3 <= #KEYS do
  for _, name in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if redis.call('HINCRBY', KEYS[i + 1], name, -1) <= 0 then
      redis.call('HDEL', KEYS[i + 1], name)
      redis.call('HDEL', KEYS[i + 2], name)
      redis.call('HDEL', KEYS[i + 3], name)
    elseif redis.call('HGET', KEYS[i + 2], name) == ARGV[1] then
      redis.call('HDEL', KEYS[i + 2], name)
    end
  end
  redis.call('DEL', KEYS[i])
  i = i + 4
end
redis.call('DEL', KEYS[1], KEYS[5])
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

WANT = """
-- KEYS: the node's wanted set, wanted counts, coordinators, provided flags. ARGV: name, node id.
-- ``name`` has subscribers on the node; returns {its coordinator (the node, if it had none),
-- 1 if it has a provider}.
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
local owner = redis.call('HGET', KEYS[3], ARGV[1])
if not owner then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  owner = ARGV[2]
end
return {owner, redis.call('HEXISTS', KEYS[4], ARGV[1])}
"""

UNWANT = """
-- KEYS: the node's wanted set, wanted counts, coordinators, provided flags. ARGV: name.
-- ``name`` lost its last subscriber on the node. Returns {nodes still wanting it, coordinator};
-- at 0 the coordinator is removed too (the caller tells it).
local owner = redis.call('HGET', KEYS[3], ARGV[1]) or ''
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  return {tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'), owner}
end
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  return {0, owner}
end
return {n, owner}
"""

TAKE_OVER = """
-- KEYS: the node's wanted set, coordinators. ARGV: name, dead node id, node id.
-- The coordinator of ``name`` died: the first survivor wanting it takes over. Returns the
-- coordinator now ('' if the node does not want the name).
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if (not owner or owner == ARGV[2]) and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  return ARGV[3]
end
return owner or ''
"""

PROVIDED = """
-- KEYS: provided flags, bus. ARGV: name, '1' (has a provider) or '0', origin, topic.
-- The coordinator's word on a record's provider, kept for nodes that want the name later and
-- announced to the nodes that want it now: ``["lp", origin, topic, name, has provider]``.
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], 1)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[2],
  cjson.encode({'', 'lp', ARGV[3], tonumber(ARGV[4]), ARGV[1], ARGV[2] == '1'}))
return 1
"""
