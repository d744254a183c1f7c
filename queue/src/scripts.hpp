#pragma once

// Internal: the queue's Lua scripts. Each runs atomically inside Redis, so a
// task is never half-enqueued, half-moved or half-acknowledged.
//
// Keys: <ns>:q:<0|1|2> streams by priority (consumer group "workers"),
// <ns>:t:<id> task hash, <ns>:delayed sorted set (score: due time in ms),
// <ns>:dead dead-letter stream, <ns>:idem:<key> idempotency markers,
// <ns>:n:<id> wake-up list of a waiting client.

namespace actorbus::queue::internal {

// Stream entries carry: id, n (name), p (payload), a (attempt), k
// (idempotency key), o ("max backoff backoff_max timeout", one field so
// that every entry costs Redis few arguments). The task hash keeps s
// (status), n, a, pr (priority), e (entry), and, while the task waits in the
// delayed set, p, k and o to rebuild its entry.

// KEYS: hash, stream, delayed. ARGV: id, name, payload, options, key, prio,
// delay_ms, and optionally '1' when the caller will wait for the result (the
// finish script then wakes it).
inline constexpr const char* enqueue_lua = R"lua(
-- The client names the task: a call that finds the task there already is
-- its own retry (its first reply was lost) and adds nothing.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('duplicate task id ' .. ARGV[1])
end
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'w', '1')
end
local d = tonumber(ARGV[7])
if d > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'n', ARGV[2], 'p', ARGV[3], 'a', '1',
    'o', ARGV[4], 'k', ARGV[5], 'pr', ARGV[6], 's', 'scheduled')
  redis.call('ZADD', KEYS[3], now + d, ARGV[1])
  return 'scheduled'
end
local e = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'n', ARGV[2],
  'p', ARGV[3], 'a', '1', 'k', ARGV[5], 'o', ARGV[4])
redis.call('HSET', KEYS[1], 'n', ARGV[2], 'a', '1', 'pr', ARGV[6],
  's', 'queued', 'e', e)
return e
)lua";

// ARGV: ns, name, options, key, prio, delay_ms (as for enqueue_lua, shared
// by the whole batch), then id and payload per task; KEYS unused
// (standalone Redis). Enqueues many tasks in one call, skipping ids that
// exist (a call sent again after a lost reply). Shared fields go
// once: Redis parses every argument and Lua interns each as a string, so 2
// per task instead of 7 take less of Redis's time per task.
inline constexpr const char* enqueue_many_lua = R"lua(
local ns, name, o, k, pr = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local d = tonumber(ARGV[6])
if d > 0 then
  local t = redis.call('TIME')
  local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + d
  local delayed = ns .. ':delayed'
  for i = 7, #ARGV, 2 do
    local id = ARGV[i]
    local h = ns .. ':t:' .. id
    if redis.call('EXISTS', h) == 0 then
      redis.call('HSET', h, 'n', name, 'p', ARGV[i + 1], 'a', '1', 'o', o,
        'k', k, 'pr', pr, 's', 'scheduled')
      redis.call('ZADD', delayed, due, id)
    end
  end
else
  local s = ns .. ':q:' .. pr
  for i = 7, #ARGV, 2 do
    local id = ARGV[i]
    local h = ns .. ':t:' .. id
    if redis.call('EXISTS', h) == 0 then
      local e = redis.call('XADD', s, '*', 'id', id, 'n', name,
        'p', ARGV[i + 1], 'a', '1', 'k', k, 'o', o)
      redis.call('HSET', h, 'n', name, 'a', '1', 'pr', pr, 's', 'queued',
        'e', e)
    end
  end
end
return (#ARGV - 6) / 2
)lua";

// A Lua prelude of promote_lua and backlog_lua: the consumer groups of
// stream `s` (none when it does not exist), each as a table of XINFO GROUPS
// fields.
inline constexpr const char* groups_lua = R"lua(
local function groups(s)
  local out = {}
  if redis.call('EXISTS', s) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local info = {}
      for j = 1, #g, 2 do
        info[g[j]] = g[j + 1]
      end
      out[#out + 1] = info
    end
  end
  return out
end
)lua";

// KEYS: delayed. ARGV: ns, limit, group. Moves due tasks to their stream,
// then trims each stream below its oldest entry still needed (pending, or
// not yet delivered to the group): acknowledging a task does not delete
// its entry one by one (XDEL seeks inside a stream node, the most costly
// command per task), this sweep drops them by whole nodes.
inline constexpr const char* promote_lua = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0,
  tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local h = ARGV[1] .. ':t:' .. id
  local f = redis.call('HMGET', h, 'n', 'p', 'a', 'k', 'o', 'pr', 's')
  if f[1] and f[6] and f[7] == 'scheduled' then
    local e = redis.call('XADD', ARGV[1] .. ':q:' .. f[6], '*', 'id', id,
      'n', f[1], 'p', f[2] or '', 'a', f[3] or '1', 'k', f[4] or '',
      'o', f[5] or '')
    redis.call('HSET', h, 's', 'queued', 'e', e)
    redis.call('HDEL', h, 'p', 'k', 'o')
  end
end
local function before(x, y)
  local xm, xs = string.match(x, '(%d+)-(%d+)')
  local ym, ys = string.match(y, '(%d+)-(%d+)')
  xm, ym = tonumber(xm), tonumber(ym)
  return xm < ym or (xm == ym and tonumber(xs) < tonumber(ys))
end
for p = 0, 2 do
  local s = ARGV[1] .. ':q:' .. p
  local floor = nil
  for _, info in ipairs(groups(s)) do
    local need = info['last-delivered-id']
    if tonumber(info['pending']) > 0 then
      local oldest = redis.call('XPENDING', s, info['name'])[2]
      if oldest and before(oldest, need) then
        need = oldest
      end
    end
    if not floor or before(need, floor) then
      floor = need
    end
  end
  if floor then
    redis.call('XTRIM', s, 'MINID', floor)
  end
end
return #ids
)lua";

// KEYS: stream. ARGV: ns, group, consumer, min idle ms, count. Claims the
// entries of dead workers (XAUTOCLAIM) and stamps each task's hash with
// the time it changed hands (field rc, ms) and the consumer that took it
// (rb). A worker whose lease renewal came late claims its own entries back:
// that is no recovery, and leaves both fields as they were (XPENDING with
// the same idle time and count lists, in the same order, the entries
// XAUTOCLAIM takes, with their holders). Returns the claimed entries and,
// per entry, its delivery count.
inline constexpr const char* reclaim_lua = R"lua(
local holder = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[2], 'IDLE',
    tonumber(ARGV[4]), '-', '+', tonumber(ARGV[5]))) do
  holder[p[1]] = p[2]
end
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[2], ARGV[3], ARGV[4],
  '0-0', 'COUNT', tonumber(ARGV[5]))
local entries = r[2]
local counts = {}
if #entries == 0 then
  return {entries, counts}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, e in ipairs(entries) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[2], e[1], e[1], 1)
  counts[i] = p[1] and p[1][4] or 2
  local f = e[2]
  if type(f) == 'table' then
    for j = 1, #f - 1, 2 do
      if f[j] == 'id' then
        local h = ARGV[1] .. ':t:' .. f[j + 1]
        if holder[e[1]] ~= ARGV[3] and redis.call('EXISTS', h) == 1 then
          redis.call('HSET', h, 'rc', now, 'rb', ARGV[3])
        end
      end
    end
  end
end
return {entries, counts}
)lua";

// ARGV: ns, group, ttl_s, then one record per task: kind (ok|retry|dead),
// stream index, entry id, task id, result or reason, idempotency key; for
// retry: next attempt, retry delay ms, payload, options, name; for dead:
// name, payload, attempts, options; then the effect count and per effect its
// argument count and arguments. A record whose entry is no longer pending
// (another worker finished it first) changes nothing. Effects run through
// pcall: a failing one (a wrong type, an unknown command) ends its task
// dead with the reason "effect failed: ..." (effects before it stay
// applied, Redis cannot undo them; the idempotency key is released when
// none was), and the other records go on. Returns the number of records
// applied, or, when effects failed, that number followed by the ids of
// their tasks.
inline constexpr const char* finish_lua = R"lua(
local ns, grp, ttl = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Numbers passed to redis.call are formatted per call (printf): the TTL
-- and the time are passed as strings made once.
local nows = tostring(now)
local i = 4
local applied = 0
local failures = {}
while i <= #ARGV do
  local kind, pr, eid, id, text, key = ARGV[i], ARGV[i + 1], ARGV[i + 2],
    ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local x = i + 6
  i = x
  if kind == 'retry' then
    i = i + 5
  elseif kind == 'dead' then
    i = i + 4
  end
  local neff = tonumber(ARGV[i])
  i = i + 1
  local h = ns .. ':t:' .. id
  local stream = ns .. ':q:' .. pr
  local acked = redis.call('XACK', stream, grp, eid)
  local fresh = acked == 1
  if fresh and kind == 'ok' and key ~= '' then
    fresh = redis.call('SET', ns .. ':idem:' .. key, id, 'NX', 'EX', ttl)
  end
  local failed, done = nil, 0
  for _ = 1, neff do
    local n = tonumber(ARGV[i])
    if fresh and kind == 'ok' and not failed then
      -- Nothing after the XACK may raise: Redis would keep the XACK and
      -- drop the rest, leaving the task acknowledged and unfinished. Lua
      -- passes at most LUAI_MAXCSTACK (8000) values to a call.
      if n > 7900 then
        failed = 'too many arguments (' .. n .. '; at most 7900)'
      else
        local ok, r = pcall(function()
          return redis.pcall(unpack(ARGV, i + 1, i + n))
        end)
        if not ok then
          failed = tostring(r)
        elseif type(r) == 'table' and r.err then
          failed = r.err
        else
          done = done + 1
        end
      end
    end
    i = i + 1 + n
  end
  if acked == 1 then
    applied = applied + 1
    if failed then
      local reason = 'effect ' .. (done + 1) .. ' failed: ' .. failed
      local f = {}
      local e = redis.call('XRANGE', stream, eid, eid)[1]
      if e then
        for j = 1, #e[2], 2 do
          f[e[2][j]] = e[2][j + 1]
        end
      end
      redis.call('XADD', ns .. ':dead', '*', 'id', id, 'n', f['n'] or '',
        'reason', reason, 'a', f['a'] or '1', 'p', f['p'] or '',
        'o', f['o'] or '', 'k', key, 'pr', pr)
      redis.call('HSET', h, 's', 'dead', 'err', reason, 'ft', nows)
      redis.call('EXPIRE', h, ttl)
      if done == 0 and key ~= '' then
        redis.call('DEL', ns .. ':idem:' .. key)
      end
      failures[#failures + 1] = id
    elseif kind == 'ok' then
      redis.call('HSET', h, 's', 'succeeded', 'r', text, 'ft', nows)
      redis.call('EXPIRE', h, ttl)
    elseif kind == 'retry' then
      redis.call('HSET', h, 's', 'scheduled', 'a', ARGV[x], 'err', text,
        'p', ARGV[x + 2], 'k', key, 'o', ARGV[x + 3], 'n', ARGV[x + 4],
        'pr', pr)
      redis.call('ZADD', ns .. ':delayed', now + tonumber(ARGV[x + 1]), id)
    else
      redis.call('XADD', ns .. ':dead', '*', 'id', id, 'n', ARGV[x],
        'reason', text, 'a', ARGV[x + 2], 'p', ARGV[x + 1],
        'o', ARGV[x + 3], 'k', key, 'pr', pr)
      if redis.call('EXISTS', h) == 1 then
        redis.call('HSET', h, 's', 'dead', 'err', text, 'ft', nows)
        redis.call('EXPIRE', h, ttl)
      end
    end
    if kind ~= 'retry' and redis.call('HEXISTS', h, 'w') == 1 then
      redis.call('RPUSH', ns .. ':n:' .. id, '1')
      redis.call('EXPIRE', ns .. ':n:' .. id, ttl)
    end
  end
end
if #failures > 0 then
  return {applied, unpack(failures)}
end
return applied
)lua";

// ARGV: ns, group. Tasks waiting or running: per stream the entries not
// yet delivered to the group plus those pending (acknowledged entries stay
// until the next sweep trims them), and the delayed set.
inline constexpr const char* backlog_lua = R"lua(
local total = redis.call('ZCARD', ARGV[1] .. ':delayed')
for p = 0, 2 do
  local s = ARGV[1] .. ':q:' .. p
  local found = false
  for _, info in ipairs(groups(s)) do
    if info['name'] == ARGV[2] then
      found = true
      local lag = info['lag']
      if type(lag) ~= 'number' then
        lag = #redis.call('XRANGE', s, '(' .. info['last-delivered-id'], '+')
      end
      total = total + lag + info['pending']
    end
  end
  if not found then
    total = total + redis.call('XLEN', s)
  end
end
return total
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
