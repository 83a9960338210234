-- qtasks_fast: every piece of server-side Redis logic, in one script.
--
-- Called as EVALSHA <sha> 1 <P> <op> <rec> <args...> where P is the queue's key
-- prefix "qtf:{<app>:<queue>}". The {...} hash tag puts every key below in one
-- Redis Cluster slot, so the script only touches keys of its own slot.
--
-- Keys it touches (all under P):
--   P:s:<prio>       stream of envelopes for one priority level (fields u=uuid, d=envelope)
--   P:t:<uuid>       task record hash: e=envelope s=status u=updated (ms) w=awaited
--                    wk=worker id r=returning tb=traceback rc=retry child
--   P:r:<uuid>       reply list pushed once when an awaited record becomes final
--   P:i:<status>     zset of finished uuids by time, per final status (dashboard index)
--   P:n:<task name>  zset of finished uuids by time, per task name (dashboard index)
--   P:names          set of task names that have a P:n:<name> index
--   P:dlq            dead-letter stream (fields u, d, reason, at)
--
-- <rec> is '1' when task records live in this Redis (RedisStorage) and '0' when
-- a foreign Storage keeps them: then P:t:*, P:r:*, P:i:*, P:n:* are not touched.
--
-- Ops:
--   enqueue now n {prio uuid name blob wait}*n
--   fetch   group consumer worker count now mode lease_ms max_deliveries nprios ttl
--           mode 0 = new only; 1 = also reclaim entries idle > lease from any consumer;
--           2 = also take over this consumer's own pending entries (a replacement process)
--           returns flat {prio, id, blob, deliveries}*
--   mark    worker now {uuid}*          (status process for entries read by a blocking XREADGROUP)
--   settle  group now ttl index n {prio id uuid status returning traceback name child}*n
--   dead    group now ttl {prio id reason}*   (uuid and body are read from the entry itself)
--   release group {prio id}*           (drain: re-add unrun entries at the tail, ack the old ones)
--   watch   uuid                        (mark a record awaited; returns its fields or false)
--   trim    now ttl                     (drop index entries older than ttl)

local P = KEYS[1]
local op = ARGV[1]
local rec = table.remove(ARGV, 2) == '1'

local function record(uuid) return P .. ':t:' .. uuid end

local function finish(uuid, now, ttl, status)
  local key = record(uuid)
  redis.call('PEXPIRE', key, ttl)
  if redis.call('HEXISTS', key, 'w') == 1 then
    local rk = P .. ':r:' .. uuid
    redis.call('RPUSH', rk, status)
    redis.call('PEXPIRE', rk, ttl)
  end
end

local function to_dlq(group, prio, id, uuid, reason, blob, now, ttl)
  local stream = P .. ':s:' .. prio
  redis.call('XADD', P .. ':dlq', '*', 'u', uuid, 'd', blob, 'reason', reason, 'at', now, 'prio', prio)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  if rec and uuid ~= '' and redis.call('EXISTS', record(uuid)) == 1 then
    redis.call('HSET', record(uuid), 's', 'error', 'tb', 'dead-lettered: ' .. reason, 'u', now)
    finish(uuid, now, ttl, 'error')
  end
end

if op == 'enqueue' then
  local now, n = ARGV[2], tonumber(ARGV[3])
  local i = 4
  for _ = 1, n do
    local prio, uuid, name, blob, wait = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    i = i + 5
    if rec then
      local key = record(uuid)
      -- created/updated times and the name are inside the envelope until the worker writes 'u'
      if wait == '1' then
        redis.call('HSET', key, 'e', blob, 's', 'new', 'w', '1')
      else
        redis.call('HSET', key, 'e', blob, 's', 'new')
      end
    end
    redis.call('XADD', P .. ':s:' .. prio, '*', 'u', uuid, 'd', blob)
  end
  return n

elseif op == 'fetch' then
  local group, consumer, worker = ARGV[2], ARGV[3], ARGV[4]
  local count, now, mode = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
  local lease, maxd, nprios, ttl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
  local out = {}
  local left = count
  local function take(prio, id, fields, deliveries)
    -- fields = {'u', uuid, 'd', blob} from our producers; anything else is passed on
    -- with an empty body so the worker dead-letters it as malformed.
    local uuid, blob = '', ''
    if fields[1] == 'u' and fields[3] == 'd' then
      uuid, blob = fields[2], fields[4]
    end
    out[#out + 1] = prio
    out[#out + 1] = id
    out[#out + 1] = blob
    out[#out + 1] = deliveries
    if rec and uuid ~= '' then redis.call('HSET', record(uuid), 's', 'process', 'wk', worker, 'u', now) end
    left = left - 1
  end
  local function claim(prio, stream, pending)
    for _, p in ipairs(pending) do
      if left <= 0 then return end
      local id, delivered = p[1], tonumber(p[4])
      local entry = redis.call('XRANGE', stream, id, id)[1]
      if not entry then
        redis.call('XACK', stream, group, id)  -- deleted underneath us: nothing to run
      elseif delivered >= maxd then
        local f = entry[2]
        to_dlq(group, prio, id, f[2] or '', 'delivered ' .. delivered .. ' times without finishing (max_deliveries=' .. maxd .. ')', f[4] or '', now, ttl)
      else
        redis.call('XCLAIM', stream, group, consumer, 0, id)
        take(prio, id, entry[2], delivered + 1)
      end
    end
  end
  for prio = 0, nprios - 1 do
    if left <= 0 then break end
    local stream = P .. ':s:' .. prio
    if mode >= 2 then
      claim(prio, stream, redis.call('XPENDING', stream, group, '-', '+', left, consumer))
    end
    if mode >= 1 and left > 0 then
      claim(prio, stream, redis.call('XPENDING', stream, group, 'IDLE', lease, '-', '+', left))
    end
    if left > 0 then
      local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', stream, '>')
      if res then
        for _, e in ipairs(res[1][2]) do take(prio, e[1], e[2], 1) end
      end
    end
  end
  return out

elseif op == 'mark' then
  local worker, now = ARGV[2], ARGV[3]
  for i = 4, #ARGV do
    redis.call('HSET', record(ARGV[i]), 's', 'process', 'wk', worker, 'u', now)
  end
  return #ARGV - 3

elseif op == 'settle' then
  local group, now, ttl, index, n = ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1', tonumber(ARGV[6])
  local acks = {}
  local names = {}
  local i = 7
  for _ = 1, n do
    local prio, id, uuid, status = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local ret, tb, name, child = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
    i = i + 8
    if rec then
      local key = record(uuid)
      redis.call('HSET', key, 's', status, 'r', ret, 'u', now)
      if tb ~= '' then redis.call('HSET', key, 'tb', tb) end
      if child ~= '' then redis.call('HSET', key, 'rc', child) end
      finish(uuid, now, ttl, status)
    end
    if rec and index then
      redis.call('ZADD', P .. ':i:' .. status, now, uuid)
      redis.call('ZADD', P .. ':n:' .. name, now, uuid)
      if not names[name] then
        names[name] = true
        redis.call('SADD', P .. ':names', name)
      end
    end
    local ids = acks[prio]
    if not ids then ids = {}; acks[prio] = ids end
    ids[#ids + 1] = id
  end
  for prio, ids in pairs(acks) do
    local stream = P .. ':s:' .. prio
    redis.call('XACK', stream, group, unpack(ids))
    redis.call('XDEL', stream, unpack(ids))
  end
  return n

elseif op == 'dead' then
  local group, now, ttl = ARGV[2], ARGV[3], ARGV[4]
  local n = 0
  for i = 5, #ARGV, 3 do
    local prio, id = ARGV[i], ARGV[i + 1]
    local entry = redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1]
    local uuid, blob = '', ''
    if entry then
      local f = entry[2]
      for j = 1, #f, 2 do
        if f[j] == 'u' then uuid = f[j + 1] elseif f[j] == 'd' then blob = f[j + 1] end
      end
    end
    to_dlq(group, prio, id, uuid, ARGV[i + 2], blob, now, ttl)
    n = n + 1
  end
  return n

elseif op == 'release' then
  local group = ARGV[2]
  local n = 0
  for i = 3, #ARGV, 2 do
    -- A fresh entry wakes blocked consumers at once; waiting for a lease would stall the drain.
    local stream = P .. ':s:' .. ARGV[i]
    local entry = redis.call('XRANGE', stream, ARGV[i + 1], ARGV[i + 1])[1]
    if entry then
      redis.call('XADD', stream, '*', unpack(entry[2]))
      n = n + 1
    end
    redis.call('XACK', stream, group, ARGV[i + 1])
    redis.call('XDEL', stream, ARGV[i + 1])
  end
  return n

elseif op == 'watch' then
  local key = record(ARGV[2])
  if redis.call('EXISTS', key) == 0 then return false end
  redis.call('HSET', key, 'w', '1')
  return redis.call('HGETALL', key)

elseif op == 'trim' then
  local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
  for _, status in ipairs({'success', 'error', 'cancel'}) do
    redis.call('ZREMRANGEBYSCORE', P .. ':i:' .. status, '-inf', cutoff)
  end
  for _, name in ipairs(redis.call('SMEMBERS', P .. ':names')) do
    redis.call('ZREMRANGEBYSCORE', P .. ':n:' .. name, '-inf', cutoff)
  end
  return 1
end
return redis.error_reply('qtasks_fast.lua: unknown op ' .. tostring(op))
