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
--   enqueue now packed                  packed = msgpack array {prio uuid name blob wait}*
--   fetch   group consumer worker count now mode lease_ms max_deliveries nprios ttl {'prio id'}*
--           mode 0 = new only; 1 = also reclaim entries idle > lease from any consumer, and take
--           one parked last attempt; 2 = also take over this consumer's own pending entries first
--           (a replacement process, or a worker whose fetch reply was lost in a connection failure:
--           it lists the entries it still runs as 'prio id' so they are left alone).
--           Returns {flat, again}: flat = {prio, id, blob, deliveries}*; again = 1 when last
--           attempts may still wait under <consumer>:last (fetch again with mode 1).
--           A reclaimed entry whose next delivery is its last (deliveries + 1 = max_deliveries) is
--           not handed out with others: it is parked under the consumer name <consumer>:last with
--           XCLAIM JUSTID (no delivery counted) and later handed out alone, as the only entry of a
--           fetch, and the worker runs it with nothing else in flight. So when a message kills its
--           worker on every run, the messages fetched with it are not charged deliveries they
--           never ran, and only the culprit reaches max_deliveries and the dead-letter stream.
--   mark    worker now {uuid}*          (status process for entries read by a blocking XREADGROUP)
--   settle  group now ttl index packed  packed = msgpack array {prio id uuid status returning traceback name child}*
--
-- enqueue and settle take their per-task fields as one msgpack string (cmsgpack is built into
-- Redis' Lua): one argument to parse instead of thousands, on both sides of the socket.
--   dead    group now ttl {prio id reason}*   (uuid and body are read from the entry itself)
--   release group now {prio id}*       (drain: re-add unrun entries at the tail, ack the old ones,
--                                        and set their records back to new)
--   watch   uuid                        (mark a record awaited; returns its fields or false)
--   trim    now ttl                     (drop index entries older than ttl)

local P = KEYS[1]
local op = ARGV[1]
local rec = table.remove(ARGV, 2) == '1'

local function record(uuid) return P .. ':t:' .. uuid end

-- uuid and body of a stream entry's fields, found by name ('' when missing); our producers
-- write {'u', uuid, 'd', blob}, another producer may order them differently or add its own.
local function fields_ud(f)
  if f[1] == 'u' and f[3] == 'd' then return f[2], f[4] end
  local uuid, blob = '', ''
  for j = 1, #f, 2 do
    if f[j] == 'u' then uuid = f[j + 1] elseif f[j] == 'd' then blob = f[j + 1] end
  end
  return uuid, blob
end

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
  local now = ARGV[2]
  local items = cmsgpack.unpack(ARGV[3])
  for i = 1, #items, 5 do
    local prio, uuid, name, blob, wait = items[i], items[i + 1], items[i + 2], items[i + 3], items[i + 4]
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
  return #items / 5

elseif op == 'fetch' then
  local group, consumer, worker = ARGV[2], ARGV[3], ARGV[4]
  local count, now, mode = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
  local lease, maxd, nprios, ttl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
  local park = consumer .. ':last'
  local held = {}
  for i = 12, #ARGV do held[ARGV[i]] = true end
  local nheld = #ARGV - 11
  local out = {}
  local left = count
  local function take(prio, id, fields, deliveries)
    -- without both a uuid and a body, the body is passed on empty so that the worker
    -- dead-letters the entry as malformed
    local uuid, blob = fields_ud(fields)
    if uuid == '' then blob = '' end
    out[#out + 1] = prio
    out[#out + 1] = id
    out[#out + 1] = blob
    out[#out + 1] = deliveries
    if rec and uuid ~= '' then redis.call('HSET', record(uuid), 's', 'process', 'wk', worker, 'u', now) end
    left = left - 1
  end
  local function claim(prio, stream, pending, parked)
    for _, p in ipairs(pending) do
      if left <= 0 then return end
      local id, delivered = p[1], tonumber(p[4])
      local entry = not held[prio .. ' ' .. id] and redis.call('XRANGE', stream, id, id)[1]
      if held[prio .. ' ' .. id] then
        -- still running in this worker: leave it alone
      elseif not entry then
        redis.call('XACK', stream, group, id)  -- deleted underneath us: nothing to run
      elseif delivered >= maxd then
        local uuid, blob = fields_ud(entry[2])
        to_dlq(group, prio, id, uuid, 'delivered ' .. delivered .. ' times without finishing (max_deliveries=' .. maxd .. ')', blob, now, ttl)
      elseif delivered + 1 >= maxd then
        -- its last delivery: parked, then handed out alone (see the header)
        if not parked then
          redis.call('XCLAIM', stream, group, park, 0, id, 'JUSTID')
        elseif left == count then
          redis.call('XCLAIM', stream, group, consumer, 0, id)
          take(prio, id, entry[2], delivered + 1)
          left = 0
        end
      else
        redis.call('XCLAIM', stream, group, consumer, 0, id)
        take(prio, id, entry[2], delivered + 1)
      end
    end
  end
  -- 1. a replacement takes over (or parks) everything its predecessor left
  if mode >= 2 then
    for prio = 0, nprios - 1 do
      if left <= 0 then break end
      local stream = P .. ':s:' .. prio
      claim(prio, stream, redis.call('XPENDING', stream, group, '-', '+', left + nheld, consumer), false)
    end
  end
  -- 2. a parked last attempt, alone, before anything new (so a busy queue cannot starve it)
  local again = 0
  if mode >= 1 and left == count then
    for prio = 0, nprios - 1 do
      claim(prio, P .. ':s:' .. prio, redis.call('XPENDING', P .. ':s:' .. prio, group, '-', '+', 10, park), true)
      if left <= 0 then
        again = 1  -- more may be parked, and the lease pass below was skipped
        break
      end
    end
  end
  -- 3. entries of consumers that stopped renewing their lease, then new entries
  for prio = 0, nprios - 1 do
    if left <= 0 then break end
    local stream = P .. ':s:' .. prio
    if mode >= 1 then
      claim(prio, stream, redis.call('XPENDING', stream, group, 'IDLE', lease, '-', '+', left), false)
    end
    if left > 0 then
      local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', stream, '>')
      if res then
        for _, e in ipairs(res[1][2]) do take(prio, e[1], e[2], 1) end
      end
    end
  end
  if mode >= 1 and again == 0 then
    for prio = 0, nprios - 1 do
      if #redis.call('XPENDING', P .. ':s:' .. prio, group, '-', '+', 1, park) > 0 then
        again = 1
        break
      end
    end
  end
  return {out, again}

elseif op == 'mark' then
  local worker, now = ARGV[2], ARGV[3]
  for i = 4, #ARGV do
    redis.call('HSET', record(ARGV[i]), 's', 'process', 'wk', worker, 'u', now)
  end
  return #ARGV - 3

elseif op == 'settle' then
  local group, now, ttl, index = ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'
  local items = cmsgpack.unpack(ARGV[6])
  local acks = {}
  local names = {}
  for i = 1, #items, 8 do
    local prio, id, uuid, status = items[i], items[i + 1], items[i + 2], items[i + 3]
    local ret, tb, name, child = items[i + 4], items[i + 5], items[i + 6], items[i + 7]
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
    -- unpack() is bounded by Lua's C stack: ack in chunks
    for j = 1, #ids, 1000 do
      local last = math.min(j + 999, #ids)
      redis.call('XACK', stream, group, unpack(ids, j, last))
      redis.call('XDEL', stream, unpack(ids, j, last))
    end
  end
  return #items / 8

elseif op == 'dead' then
  local group, now, ttl = ARGV[2], ARGV[3], ARGV[4]
  local n = 0
  for i = 5, #ARGV, 3 do
    local prio, id = ARGV[i], ARGV[i + 1]
    local entry = redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1]
    local uuid, blob = '', ''
    if entry then uuid, blob = fields_ud(entry[2]) end
    to_dlq(group, prio, id, uuid, ARGV[i + 2], blob, now, ttl)
    n = n + 1
  end
  return n

elseif op == 'release' then
  local group, now = ARGV[2], ARGV[3]
  local n = 0
  for i = 4, #ARGV, 2 do
    -- A fresh entry wakes blocked consumers at once; waiting for a lease would stall the drain.
    local stream = P .. ':s:' .. ARGV[i]
    local entry = redis.call('XRANGE', stream, ARGV[i + 1], ARGV[i + 1])[1]
    if entry then
      local f = entry[2]
      redis.call('XADD', stream, '*', unpack(f))
      n = n + 1
      -- nobody runs it now: its record must not say 'process' until a worker fetches it again
      local uuid = fields_ud(f)
      if rec and uuid ~= '' and redis.call('EXISTS', record(uuid)) == 1 then
        redis.call('HSET', record(uuid), 's', 'new', 'u', now)
        redis.call('HDEL', record(uuid), 'wk')
      end
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
