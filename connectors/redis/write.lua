-- recordgate: one conditional batch write, atomic (no other command runs meanwhile).
--
-- KEYS[1] names index, KEYS[2] collections index; op i (1-based): KEYS[3i] its record hash,
-- KEYS[3i + 1] its collection's sorted set, KEYS[3i + 2] its fence key.
-- ARGV[1] updated_at; op i: ARGV[6i - 4 .. 6i + 1] = kind ('P' put, 'D' delete), name,
-- collection, version (decimal text), data (JSON text; empty for a delete), fence (decimal
-- text; empty for an unfenced op).
-- Reply, per op: 0 if applied; {'C', stored version, stored data} a conflict; {'F', stored
-- fence, stored version, stored data} (the last two absent if no record is stored) fenced.
--
-- Fences: the fence key holds the highest fence applied to the name, kept when the record is
-- deleted (a tombstone: no hash, no index entry). A fenced op lower than it is refused and
-- changes nothing; otherwise the version rules decide, and an applied fenced op (also an
-- idempotent retry, or deleting nothing) raises the fence key to its fence. Unfenced ops never
-- read or write the fence key. Checked and written here, in one script: atomic with the write.
--
-- Versions and fences stay decimal text from end to end: Lua numbers are doubles, exact only
-- up to 2^53, so they are compared as digit strings (sign, then length, then text).
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

local function require_fence(key, stored)
  if stored and not stored:match('^%d+$') then
    return redis.error_reply('WRONGTYPE recordgate fence ' .. key .. ' is not a decimal integer')
  end
end

local count = (#ARGV - 1) / 6
local replies, actions, fences, checked = {}, {}, {}, {}

for i = 1, count do
  local a = 6 * i - 4
  local kind, version, data, fence = ARGV[a], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local set = KEYS[3 * i + 1]
  if not checked[set] then
    checked[set] = true
    bad = require_zset(set)
    if bad then
      return bad
    end
  end
  local stored = redis.call('HMGET', KEYS[3 * i], 'version', 'data')
  local current = stored[1]
  local stored_fence = false
  if fence ~= '' then
    stored_fence = redis.call('GET', KEYS[3 * i + 2])
    bad = require_fence(KEYS[3 * i + 2], stored_fence)
    if bad then
      return bad
    end
  end
  local action = false
  if stored_fence and compare(stored_fence, fence) > 0 then
    if current then
      replies[i] = {'F', stored_fence, current, stored[2]}
    else
      replies[i] = {'F', stored_fence}
    end
  elseif kind == 'P' then
    if not current then
      action = 'create'
    elseif compare(current, version) < 0 then
      action = 'update'
    elseif current ~= version or stored[2] ~= data then
      replies[i] = {'C', current, stored[2]}
    end
  elseif current then
    if compare(current, version) > 0 then
      replies[i] = {'C', current, stored[2]}
    else
      action = 'delete'
    end
  end
  if not replies[i] then
    replies[i] = 0
    -- Applied (or an idempotent retry, or deleting nothing): the fence rises to this op's.
    if fence ~= '' and (not stored_fence or compare(stored_fence, fence) < 0) then
      fences[i] = fence
    end
  end
  actions[i] = action
end

local now = ARGV[1]
local listed = {}
for i = 1, count do
  local action = actions[i]
  if fences[i] then
    redis.call('SET', KEYS[3 * i + 2], fences[i])
  end
  if action then
    local a = 6 * i - 4
    local key, set = KEYS[3 * i], KEYS[3 * i + 1]
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
