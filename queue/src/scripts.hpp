#pragma once

// Internal: the queue's Lua scripts. Each runs atomically inside Redis, so a
// task is never half-enqueued, half-moved or half-acknowledged.
//
// Keys: <ns>:q:<0|1|2> streams by priority (consumer group "workers"),
// <ns>:t:<id> task hash, <ns>:delayed sorted set (score: due time in ms),
// <ns>:dead dead-letter stream, <ns>:idem:<key> idempotency markers,
// <ns>:n:<id> wake-up list of a waiting client.

namespace actorbus::queue::internal {

// KEYS: hash, stream, delayed. ARGV: id, name, payload, max, backoff,
// backoff_max, timeout, key, prio, delay_ms, and optionally '1' when the
// caller will wait for the result (the finish script then wakes it).
inline constexpr const char* enqueue_lua = R"lua(
if ARGV[11] == '1' then
  redis.call('HSET', KEYS[1], 'w', '1')
end
local d = tonumber(ARGV[10])
if d > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'n', ARGV[2], 'p', ARGV[3], 'a', '1',
    'm', ARGV[4], 'b', ARGV[5], 'bm', ARGV[6], 't', ARGV[7], 'k', ARGV[8],
    'pr', ARGV[9], 's', 'scheduled')
  redis.call('ZADD', KEYS[3], now + d, ARGV[1])
  return 'scheduled'
end
local e = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'n', ARGV[2],
  'p', ARGV[3], 'a', '1', 'm', ARGV[4], 'b', ARGV[5], 'bm', ARGV[6],
  't', ARGV[7], 'k', ARGV[8])
redis.call('HSET', KEYS[1], 'n', ARGV[2], 'p', ARGV[3], 'a', '1',
  'm', ARGV[4], 'b', ARGV[5], 'bm', ARGV[6], 't', ARGV[7], 'k', ARGV[8],
  'pr', ARGV[9], 's', 'queued', 'e', e)
return e
)lua";

// ARGV: ns, then per task the 10 ARGV of enqueue_lua (id first); KEYS
// unused (standalone Redis). Enqueues many tasks in one call.
inline constexpr const char* enqueue_many_lua = R"lua(
local ns = ARGV[1]
local out = {}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV, 10 do
  local id, name, p, m, b, bm, to, k, pr = ARGV[i], ARGV[i + 1],
    ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
    ARGV[i + 7], ARGV[i + 8]
  local d = tonumber(ARGV[i + 9])
  local h = ns .. ':t:' .. id
  if d > 0 then
    redis.call('HSET', h, 'n', name, 'p', p, 'a', '1', 'm', m, 'b', b,
      'bm', bm, 't', to, 'k', k, 'pr', pr, 's', 'scheduled')
    redis.call('ZADD', ns .. ':delayed', now + d, id)
  else
    local e = redis.call('XADD', ns .. ':q:' .. pr, '*', 'id', id, 'n', name,
      'p', p, 'a', '1', 'm', m, 'b', b, 'bm', bm, 't', to, 'k', k)
    redis.call('HSET', h, 'n', name, 'p', p, 'a', '1', 'm', m, 'b', b,
      'bm', bm, 't', to, 'k', k, 'pr', pr, 's', 'queued', 'e', e)
  end
end
return (#ARGV - 1) / 10
)lua";

// KEYS: delayed. ARGV: ns, limit. Moves due tasks to their stream.
inline constexpr const char* promote_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0,
  tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local h = ARGV[1] .. ':t:' .. id
  local f = redis.call('HMGET', h, 'n', 'p', 'a', 'm', 'b', 'bm', 't', 'k',
    'pr', 's')
  if f[1] and f[10] == 'scheduled' then
    local e = redis.call('XADD', ARGV[1] .. ':q:' .. f[9], '*', 'id', id,
      'n', f[1], 'p', f[2], 'a', f[3], 'm', f[4], 'b', f[5], 'bm', f[6],
      't', f[7], 'k', f[8])
    redis.call('HSET', h, 's', 'queued', 'e', e)
  end
end
return #ids
)lua";

// ARGV: ns, group, ttl_s, then records of 12 fields: kind (ok|retry|dead),
// stream index, entry id, task id, result or reason, idempotency key, next
// attempt, retry delay ms, name, payload, attempts, effect count; then per
// effect its argument count and arguments. A record whose entry is no
// longer pending (another worker finished it first) changes nothing.
// Returns the number of records applied.
inline constexpr const char* finish_lua = R"lua(
local ns, grp, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local i = 4
local applied = 0
while i <= #ARGV do
  local kind, eid, id, text, key = ARGV[i], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5]
  local stream = ns .. ':q:' .. ARGV[i + 1]
  local nexta, delay = ARGV[i + 6], tonumber(ARGV[i + 7])
  local name, payload, attempts = ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
  local neff = tonumber(ARGV[i + 11])
  i = i + 12
  local h = ns .. ':t:' .. id
  local acked = redis.call('XACK', stream, grp, eid)
  redis.call('XDEL', stream, eid)
  local fresh = acked == 1
  if fresh and kind == 'ok' and key ~= '' then
    fresh = redis.call('SET', ns .. ':idem:' .. key, id, 'NX', 'EX', ttl)
  end
  for _ = 1, neff do
    local n = tonumber(ARGV[i])
    if fresh and kind == 'ok' then
      redis.call(unpack(ARGV, i + 1, i + n))
    end
    i = i + 1 + n
  end
  if acked == 1 then
    applied = applied + 1
    if kind == 'ok' then
      redis.call('HSET', h, 's', 'succeeded', 'r', text, 'ft', now)
      redis.call('EXPIRE', h, ttl)
    elseif kind == 'retry' then
      redis.call('HSET', h, 's', 'scheduled', 'a', nexta, 'err', text)
      redis.call('ZADD', ns .. ':delayed', now + delay, id)
    else
      redis.call('XADD', ns .. ':dead', '*', 'id', id, 'n', name,
        'reason', text, 'a', attempts, 'p', payload)
      if redis.call('EXISTS', h) == 1 then
        redis.call('HSET', h, 's', 'dead', 'err', text, 'ft', now)
        redis.call('EXPIRE', h, ttl)
      end
    end
    if kind ~= 'retry' and redis.call('HEXISTS', h, 'w') == 1 then
      redis.call('RPUSH', ns .. ':n:' .. id, '1')
      redis.call('EXPIRE', ns .. ':n:' .. id, ttl)
    end
  end
end
return applied
)lua";

// KEYS: hash. Marks the task as waited for; returns status, name,
// attempt, result, error.
inline constexpr const char* wait_prepare_lua = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
redis.call('HSET', KEYS[1], 'w', '1')
return redis.call('HMGET', KEYS[1], 's', 'n', 'a', 'r', 'err')
)lua";

// KEYS: hash, delayed. ARGV: ns, group, id, ttl_s. 1: cancelled, 0: not.
inline constexpr const char* cancel_lua = R"lua(
local f = redis.call('HMGET', KEYS[1], 's', 'e', 'pr')
local s = f[1]
if s == 'scheduled' then
  redis.call('ZREM', KEYS[2], ARGV[3])
elseif s == 'queued' then
  local stream = ARGV[1] .. ':q:' .. f[3]
  local p = redis.call('XPENDING', stream, ARGV[2], f[2], f[2], 1)
  if #p > 0 then
    return 0
  end
  if redis.call('XDEL', stream, f[2]) == 0 then
    return 0
  end
else
  return 0
end
redis.call('HSET', KEYS[1], 's', 'cancelled')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
if redis.call('HEXISTS', KEYS[1], 'w') == 1 then
  redis.call('RPUSH', ARGV[1] .. ':n:' .. ARGV[3], '1')
  redis.call('EXPIRE', ARGV[1] .. ':n:' .. ARGV[3], tonumber(ARGV[4]))
end
return 1
)lua";

} // namespace actorbus::queue::internal
