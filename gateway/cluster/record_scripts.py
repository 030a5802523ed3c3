"""Lua scripts of the records' cluster state (docs/cluster.md, "Records"). Each touches keys of
one slot: every key carries the prefix's hash tag (``keys``).

A record's hash ``{P}:r:<sha1>`` holds ``n`` (name), ``s`` (sequence: rises by one with every
commit, a put or a delete; a seeded record starts at the Redis clock in microseconds, so a
sequence never repeats across the key's expiry and re-seeding), ``v`` (version), ``x`` ("1":
a tombstone, the record reads as absent), ``d`` (data, JSON text; absent on a tombstone),
``dv`` (a storage delete of every version up to ``dv`` still to be written before anything
else of the record), ``f`` (the sequence storage is known to hold: acknowledgements wait
for ``f >= `` their commit's sequence) and ``o`` (the sequence the key was seeded with: a
commit's sequence below it belongs to a state Redis lost, and is acknowledged only by the node
that stored it), and ``fo`` (the fence offset, absent: 0): the storage writes of the state of
sequence ``s`` carry fences from ``s + fo`` (``flusher.fences``: ``2 * (s + fo)`` for the
delete of ``dv``, one more for the put), so fences rise with the sequence and across the
record's lives (a seed starts at the clock); ``fo`` is raised only when storage holds a fence
above the cluster's (``FENCE_UP``: a Redis that restarted empty with a clock behind the
previous one's). Sequences and versions travel as decimal strings and are
compared as strings (equality) or by length then text (order): Lua numbers are doubles.
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "CLEAN",
    "COMMIT",
    "DEFER",
    "DROP_DV",
    "FENCE_UP",
    "READ",
    "REPLACE",
    "SEED",
]

_GT = """
local function gt(a, b)  -- a > b for decimal strings without leading zeros
  if #a ~= #b then return #a > #b end
  return a > b
end
"""

COMMIT = (
    _GT
    + """
-- KEYS: record, dirty, bus, position. ARGV: expected seq, 'p' (put) or 'd' (delete), version,
-- data, name, tag. The compare-and-set that is the version authority: applies only over the
-- state the node computed from; publishes the change on the bus from inside, so every node
-- receives a record's changes in the order Redis ran them, each with the position counter.
local s = redis.call('HGET', KEYS[1], 's')
if not s then return {'missing', redis.call('GET', KEYS[4]) or '0'} end
if s ~= ARGV[1] then
  local cur = redis.call('HMGET', KEYS[1], 's', 'v', 'x', 'd')
  return {'stale', cur[1], cur[2], cur[3], cur[4] or '', redis.call('GET', KEYS[4]) or '0'}
end
local version, data = ARGV[3], ARGV[4]
if ARGV[2] == 'd' then
  local cur = redis.call('HMGET', KEYS[1], 'v', 'x', 'dv')
  local dv = cur[3]
  if cur[2] == '0' and (not dv or gt(cur[1], dv)) then dv = cur[1] end
  redis.call('HDEL', KEYS[1], 'd')
  redis.call('HSET', KEYS[1], 'x', '1')
  if dv then redis.call('HSET', KEYS[1], 'dv', dv) end
  version, data = cur[1], false
else
  redis.call('HSET', KEYS[1], 'v', version, 'd', data, 'x', '0', 'n', ARGV[5])
end
redis.call('HINCRBY', KEYS[1], 's', 1)
local seq = redis.call('HGET', KEYS[1], 's')
redis.call('PERSIST', KEYS[1])  -- kept until storage has it
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], 'NX', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000),
  KEYS[1])
local pos = tostring(redis.call('INCR', KEYS[4]))
redis.call('PUBLISH', KEYS[3],
  cjson.encode({'', 'rec', ARGV[5], seq, version, data, ARGV[6], pos}))
return {'ok', seq, pos}
"""
)

SEED = """
-- KEYS: record, position. ARGV: name, ttl ms, '1' if storage holds the record, its version, its
-- data, the Redis time (ms) taken before the storage read began, (unused), the ttl ms of a
-- record storage lacks (absent: reads of any name may make those). Makes what storage held the
-- cluster state only if the record has none (a concurrent commit or seed wins); returns the
-- state and the position counter, or {'retry'} if the read began a ttl or more ago: a state may
-- have been committed, stored and expired since, and storage's answer may be older than it (a
-- paused node, a slow reply).
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[6])
      >= tonumber(ARGV[2]) then
    return {'retry'}
  end
  local s = now[1] .. string.sub('00000' .. now[2], -6)
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], 'n', ARGV[1], 's', s, 'f', s, 'o', s, 'v', ARGV[4], 'd', ARGV[5],
      'x', '0')
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  else
    redis.call('HSET', KEYS[1], 'n', ARGV[1], 's', s, 'f', s, 'o', s, 'v', '0', 'x', '1')
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
  end
end
local cur = redis.call('HMGET', KEYS[1], 's', 'v', 'x', 'd')
return {cur[1], cur[2], cur[3], cur[4] or '', redis.call('GET', KEYS[2]) or '0'}
"""

READ = """
-- KEYS: record, position. The state ({s, v, x, d}; s false if Redis does not hold the record)
-- and the position counter, read at one instant.
local cur = redis.call('HMGET', KEYS[1], 's', 'v', 'x', 'd')
return {cur[1], cur[2], cur[3], cur[4] or '', redis.call('GET', KEYS[2]) or '0'}
"""

REPLACE = """
-- KEYS: record, bus, position. ARGV: as SEED, ARGV[7] the sequence read before the storage
-- read ('': none). NOTIFY: storage changed behind the cluster's back. Unless the cluster holds
-- changes of the record not yet stored (they win, and will overwrite storage), what storage
-- holds becomes the state, as a commit announced to every node. {'retry'} if the state changed
-- and was stored during the storage read (that commit may be newer than storage's answer: never
-- roll it back) or, for a record Redis lacked, if the read began a ttl or more ago (as SEED).
local st = redis.call('HMGET', KEYS[1], 's', 'f')
if (st[1] or '') ~= ARGV[7] and (not st[1] or st[1] == st[2]) then
  return {'retry'}  -- changed and stored meanwhile (unstored changes would win anyway)
end
if not st[1] then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[6])
      >= tonumber(ARGV[2]) then
    return {'retry'}
  end
  local s = now[1] .. string.sub('00000' .. now[2], -6)
  redis.call('HSET', KEYS[1], 'n', ARGV[1], 's', s, 'f', s, 'o', s, 'v', '0', 'x', '1')
end
if not st[1] or st[1] == st[2] then
  if ARGV[3] == '1' then
    redis.call('HSET', KEYS[1], 'v', ARGV[4], 'd', ARGV[5], 'x', '0')
  else
    redis.call('HDEL', KEYS[1], 'd')
    redis.call('HSET', KEYS[1], 'x', '1')
  end
  redis.call('HINCRBY', KEYS[1], 's', 1)
  local seq = redis.call('HGET', KEYS[1], 's')
  redis.call('HSET', KEYS[1], 'f', seq)
  if ARGV[3] == '1' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
  end
  local data = false
  if ARGV[3] == '1' then data = ARGV[5] end
  local pos = tostring(redis.call('INCR', KEYS[3]))
  redis.call('PUBLISH', KEYS[2], cjson.encode({'', 'rec', ARGV[1], seq, ARGV[4], data, '', pos}))
end
local cur = redis.call('HMGET', KEYS[1], 's', 'v', 'x', 'd')
return {cur[1], cur[2], cur[3], cur[4] or '', redis.call('GET', KEYS[3]) or '0'}
"""

CLAIM = """
-- KEYS: record, lease. ARGV: node id, lease ms. Take (or extend) the record's flush lease and
-- return the state to write: {'ok', n, s, v, x, d, dv, f, o, fo}; {'busy', f, o} while another
-- node holds the lease; {'missing'} if Redis lost the record.
local st = redis.call('HMGET', KEYS[1], 'n', 's', 'v', 'x', 'd', 'dv', 'f', 'o', 'fo')
if not st[2] then return {'missing'} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {'busy', st[7] or '0', st[8] or '0'} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'ok', st[1] or '', st[2], st[3], st[4], st[5] or '', st[6] or '', st[7] or '0',
  st[8] or '0', st[9] or '0'}
"""

FENCE_UP = (
    _GT
    + """
-- KEYS: record. ARGV: fence offset. Storage refused a write because it holds a fence above the
-- one the cluster sent (from the sequence plus 'fo'): raise 'fo' to ARGV[1] (computed by the
-- flusher so that the claimed sequence's fences are above storage's; sequences only rise)
-- unless it is higher already. Returns 0 if Redis lost the record.
if not redis.call('HGET', KEYS[1], 's') then return 0 end
local fo = redis.call('HGET', KEYS[1], 'fo')
if not fo or gt(ARGV[1], fo) then redis.call('HSET', KEYS[1], 'fo', ARGV[1]) end
return 1
"""
)

DEFER = """
-- KEYS: dirty, record. Storage refused the record's write for good (its writers were told): its
-- dirty time becomes now, so the orphan sweep, which takes the oldest dirty records a batch at
-- a time, takes the others first; it is tried again once it is orphan_after old.
local now = redis.call('TIME')
return redis.call('ZADD', KEYS[1], 'XX',
  tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), KEYS[2])
"""

DROP_DV = """
-- KEYS: record, lease. ARGV: node id, dv written. Storage no longer holds any version up to dv:
-- forget the pending delete unless a newer delete raised it meanwhile.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'dv') == ARGV[2] then redis.call('HDEL', KEYS[1], 'dv') end
return 1
"""

CLEAN = """
-- KEYS: record, dirty, lease. ARGV: node id, seq written, ttl ms. Storage holds the state of
-- sequence ARGV[2]: raise f; if nothing newer was committed, the record is clean (it leaves the
-- dirty set and expires after the ttl), else its dirty time becomes now: its unstored changes
-- came after this flush's claim, and a record written without pause is not an orphan while
-- its flusher keeps up. Releases the lease. Returns 2 if the state was seeded again after that
-- sequence (Redis lost it): storage changed behind the new state's back.
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
local s = redis.call('HGET', KEYS[1], 's')
if not s then return 0 end
local o = redis.call('HGET', KEYS[1], 'o')
if o and tonumber(o) > tonumber(ARGV[2]) then return 2 end
local f = redis.call('HGET', KEYS[1], 'f')
if not f or tonumber(f) < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], 'f', ARGV[2]) end
if s == ARGV[2] then
  redis.call('ZREM', KEYS[2], KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000),
    KEYS[1])
end
return 1
"""
