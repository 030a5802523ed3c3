-- recordgate: one conditional batch write, atomic (no other command runs meanwhile).
--
-- KEYS[1] names index, KEYS[2] collections index; op i (1-based): KEYS[1 + 2i] its record hash,
-- KEYS[2 + 2i] its collection's sorted set.
-- ARGV[1] updated_at; op i: ARGV[5i - 3 .. 5i + 1] = kind ('P' put, 'D' delete), name,
-- collection, version (decimal text), data (JSON text; empty for a delete).
-- Reply, per op: 0 if applied, else {stored version, stored data} (a conflict).
--
-- Versions stay decimal text from end to end: Lua numbers are doubles, exact only up to 2^53,
-- so they are compared as digit strings (sign, then length, then text).
-- Everything is read and checked before the first write, so an error (a key of the wrong type)
-- stops the script having written nothing: Redis does not roll back a script's earlier writes.

local function compare(a, b)
  local a_neg, b_neg = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if a_neg ~= b_neg then
    return a_neg and -1 or 1
  end
  local order
  if #a ~= #b then
    order = #a < #b and -1 or 1
  elseif a == b then
    return 0
  else
    order = a < b and -1 or 1
  end
  return a_neg and -order or order
end

local function require_zset(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE recordgate index ' .. key .. ' is a ' .. kind)
  end
end

local bad = require_zset(KEYS[1]) or require_zset(KEYS[2])
if bad then
  return bad
end

local count = (#ARGV - 1) / 5
local replies, actions, checked = {}, {}, {}

for i = 1, count do
  local a = 5 * i - 3
  local kind, version, data = ARGV[a], ARGV[a + 3], ARGV[a + 4]
  local set = KEYS[2 + 2 * i]
  if not checked[set] then
    checked[set] = true
    bad = require_zset(set)
    if bad then
      return bad
    end
  end
  local stored = redis.call('HMGET', KEYS[1 + 2 * i], 'version', 'data')
  local current = stored[1]
  local action = false
  if kind == 'P' then
    if not current then
      action = 'create'
    elseif compare(current, version) < 0 then
      action = 'update'
    elseif current ~= version or stored[2] ~= data then
      replies[i] = {current, stored[2]}
    end
  elseif current then
    if compare(current, version) > 0 then
      replies[i] = {current, stored[2]}
    else
      action = 'delete'
    end
  end
  replies[i] = replies[i] or 0
  actions[i] = action
end

local now = ARGV[1]
local listed = {}
for i = 1, count do
  local action = actions[i]
  if action then
    local a = 5 * i - 3
    local key, set = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
    local name, collection = ARGV[a + 1], ARGV[a + 2]
    if action == 'delete' then
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[1], name)
      redis.call('ZREM', set, name)
      if redis.call('ZCARD', set) == 0 then
        redis.call('ZREM', KEYS[2], collection)
      end
    else
      redis.call('HSET', key, 'name', name, 'collection', collection,
        'version', ARGV[a + 3], 'data', ARGV[a + 4], 'updated_at', now)
      if action == 'create' then
        redis.call('ZADD', KEYS[1], 0, name)
        redis.call('ZADD', set, 0, name)
        if not listed[collection] then
          listed[collection] = true
          redis.call('ZADD', KEYS[2], 0, collection)
        end
      end
    end
  end
end

return replies
