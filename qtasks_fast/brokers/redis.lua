-- qtasks_fast: every piece of server-side Redis logic, in one script.
--
-- Called as EVALSHA <sha> 1 <P> <op> <rec> <args...> where P is the queue's key
-- prefix "qtf:{<app>:<queue>}". The {...} hash tag puts every key below in one
-- Redis Cluster slot, so the script only touches keys of its own slot.
--
-- Keys it touches (all under P):
--   P:s:<prio>       stream of envelopes for one priority level (fields u=uuid, d=envelope)
--   P:q              hash uuid -> '<prio> <stream id>' of every message not yet finished:
--                    how a queued task is found by uuid before it has a record
--   P:t:<uuid>       record of a finished task: a msgpack array [envelope (bin), status, updated ms (str),
--                    returning (bin), worker id, traceback, retry child], written once (SET PX ttl) by
--                    the worker's settle; it exists only once the task is final
--   P:wait           set of uuids a producer awaits; settle pushes their P:r:<uuid>
--   P:r:<uuid>       reply list: the final record, pushed once for an awaited task
--   P:log            stream of settled batches, one entry per batch (b = msgpack [[uuid, status, name]*]):
--                    the dashboard's "recent tasks" index by time, trimmed by age
--   P:i:<status>     zset by time of the uuids that ended error / cancel (the rare ones a dashboard filters for)
--   P:count          hash status -> tasks finished with it (counters for dashboards and metrics)
--   P:dlq            dead-letter stream (fields u, d, reason, at, prio)
--
-- A task is 'process' while its entry is pending in the group (XPENDING says which consumer,
-- i.e. which worker, holds it), so starting a task writes nothing.
--
-- Cost model: a task costs two commands of its own (XADD, SET of its record);
-- everything else (P:q, the index, counters, acks, waiters) is one command per
-- batch, because Redis is the shared bottleneck of a fleet.
--
-- <rec> is '1' when task records live in this Redis (RedisStorage) and '0' when
-- a foreign Storage keeps them: then P:q, P:t:*, P:wait, P:r:*, P:log, P:i:*, P:count are not touched.
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
--   settle  group now ttl packed log
--           packed = msgpack array {prio id uuid status record}* (record: see P:t, built by the worker);
--           log = the batch's P:log entry, built by the worker ('' = no index)
--   dead    group now ttl {prio id reason}*   (uuid and body are read from the entry itself)
--   release group now {prio id}*       (drain: re-add unrun entries at the tail, ack the old ones;
--                                        their status is new again)
--   renew   group consumer {prio id}*   (lease keeper: reset the idle time of entries this consumer
--                                        still owns; one taken over by another consumer stays theirs)
--   get     group uuid                  ({'R', record} when final, else fields e/s/wk/u of a queued or
--                                        running task, or false when unknown)
--   watch   group uuid                  (get, and add a queued or running task to P:wait)
--   trim    now ttl                     (drop index entries older than ttl)
--
-- enqueue and settle take their per-task fields as one msgpack string (cmsgpack is built into
-- Redis' Lua): one argument to parse instead of thousands, on both sides of the socket.

local P = KEYS[1]
local op = ARGV[1]
local rec = table.remove(ARGV, 2) == '1'

local function record(uuid) return P .. ':t:' .. uuid end

-- redis.call(cmd, key, list...) in slices: unpack() is bounded by Lua's C stack
local function chunked(cmd, key, list, step, extra)
  for j = 1, #list, 1000 * step do
    local last = math.min(j + 1000 * step - 1, #list)
    if extra then
      redis.call(cmd, key, extra, unpack(list, j, last))
    else
      redis.call(cmd, key, unpack(list, j, last))
    end
  end
end

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

-- msgpack of string x as kind 'bin' or 'str', for records built here
local function mp(kind, x)
  local n = #x
  local function be(v, k)
    local out = ''
    for _ = 1, k do out = string.char(v % 256) .. out; v = math.floor(v / 256) end
    return out
  end
  if kind == 'str' then
    if n < 32 then return string.char(0xa0 + n) .. x end
    if n < 256 then return '\217' .. be(n, 1) .. x end
    if n < 65536 then return '\218' .. be(n, 2) .. x end
    return '\219' .. be(n, 4) .. x
  end
  if n < 256 then return '\196' .. be(n, 1) .. x end
  if n < 65536 then return '\197' .. be(n, 2) .. x end
  return '\198' .. be(n, 4) .. x
end

-- wake the producers awaiting any of these {uuid, record, ...}: their reply list gets the
-- record itself, so a waiter needs no further round trip to read it
local function notify(done, ttl)
  if #done == 0 or redis.call('SCARD', P .. ':wait') == 0 then return end
  local uuids = {}
  for j = 1, #done, 2 do uuids[#uuids + 1] = done[j] end
  local hits = {}
  for j = 1, #uuids, 1000 do
    local flags = redis.call('SMISMEMBER', P .. ':wait', unpack(uuids, j, math.min(j + 999, #uuids)))
    for k, f in ipairs(flags) do
      if f == 1 then
        local idx = (j + k - 2) * 2 + 1
        local rk = P .. ':r:' .. done[idx]
        redis.call('RPUSH', rk, done[idx + 1])
        redis.call('PEXPIRE', rk, ttl)
        hits[#hits + 1] = done[idx]
      end
    end
  end
  if #hits > 0 then chunked('SREM', P .. ':wait', hits, 1) end
end

local function to_dlq(group, prio, id, uuid, reason, blob, now, ttl)
  local stream = P .. ':s:' .. prio
  redis.call('XADD', P .. ':dlq', '*', 'u', uuid, 'd', blob, 'reason', reason, 'at', now, 'prio', prio)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  if rec and uuid ~= '' then
    redis.call('HDEL', P .. ':q', uuid)
    -- the record format of P:t, written by hand: cmsgpack knows no bin type
    local r = string.char(0x97) .. mp('bin', blob) .. mp('str', 'error') .. mp('str', now) .. mp('bin', '')
      .. mp('str', '') .. mp('str', 'dead-lettered: ' .. reason) .. mp('str', '')
    redis.call('SET', record(uuid), r, 'PX', ttl)
    redis.call('ZADD', P .. ':i:error', now, uuid)
    redis.call('HINCRBY', P .. ':count', 'error', 1)
    notify({uuid, r}, ttl)
  end
end

-- fields of a task by uuid: its record when final, else synthesized from P:q, its entry and the PEL
local function get(group, uuid)
  local r = redis.call('GET', record(uuid))
  if r then return {'R', r}, true end
  local where = redis.call('HGET', P .. ':q', uuid)
  if not where then return false, false end
  local prio, id = string.match(where, '^(%S+) (%S+)$')
  local entry = redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1]
  if not entry then return false, false end
  local _, blob = fields_ud(entry[2])
  -- pcall: before any worker started there is no group yet, and nothing is pending
  local pel = redis.pcall('XPENDING', P .. ':s:' .. prio, group, id, id, 1)
  local pending = type(pel) == 'table' and not pel.err and pel[1]
  if pending and not string.find(pending[2], ':last', 1, true) then
    local t = redis.call('TIME')
    local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(pending[3])
    return {'e', blob, 's', 'process', 'wk', pending[2], 'u', tostring(at)}, false
  end
  return {'e', blob, 's', 'new'}, false
end

if op == 'enqueue' then
  local now = ARGV[2]
  local items = cmsgpack.unpack(ARGV[3])
  local queued, waiting = {}, {}
  for i = 1, #items, 5 do
    local prio, uuid, blob = items[i], items[i + 1], items[i + 3]
    local id = redis.call('XADD', P .. ':s:' .. prio, '*', 'u', uuid, 'd', blob)
    queued[#queued + 1] = uuid
    queued[#queued + 1] = prio .. ' ' .. id
    if items[i + 4] == '1' then waiting[#waiting + 1] = uuid end
  end
  if rec then
    chunked('HSET', P .. ':q', queued, 2)
    if #waiting > 0 then chunked('SADD', P .. ':wait', waiting, 1) end
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

elseif op == 'settle' then
  local group, now, ttl = ARGV[2], ARGV[3], ARGV[4]
  local items = cmsgpack.unpack(ARGV[5])
  local acks, uuids, done, counts, rare = {}, {}, {}, {}, {}
  for i = 1, #items, 5 do
    local prio, id, uuid, status = items[i], items[i + 1], items[i + 2], items[i + 3]
    if rec then
      redis.call('SET', record(uuid), items[i + 4], 'PX', ttl)
      uuids[#uuids + 1] = uuid
      done[#done + 1] = uuid
      done[#done + 1] = items[i + 4]
      counts[status] = (counts[status] or 0) + 1
      if status ~= 'success' then
        local r = rare[status]
        if not r then r = {}; rare[status] = r end
        r[#r + 1] = now
        r[#r + 1] = uuid
      end
    end
    local ids = acks[prio]
    if not ids then ids = {}; acks[prio] = ids end
    ids[#ids + 1] = id
  end
  if rec then
    chunked('HDEL', P .. ':q', uuids, 1)
    for status, n in pairs(counts) do redis.call('HINCRBY', P .. ':count', status, n) end
    if ARGV[6] ~= '' then
      redis.call('XADD', P .. ':log', '*', 'b', ARGV[6])
      for status, pairs_ in pairs(rare) do chunked('ZADD', P .. ':i:' .. status, pairs_, 2) end
    end
    notify(done, ttl)
  end
  for prio, ids in pairs(acks) do
    local stream = P .. ':s:' .. prio
    chunked('XACK', stream, ids, 1, group)
    chunked('XDEL', stream, ids, 1)
  end
  return #items / 5

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
    local prio = ARGV[i]
    local stream = P .. ':s:' .. prio
    local entry = redis.call('XRANGE', stream, ARGV[i + 1], ARGV[i + 1])[1]
    if entry then
      local f = entry[2]
      local id = redis.call('XADD', stream, '*', unpack(f))
      n = n + 1
      -- nobody runs it now: its status is new again, at its new place in the stream
      local uuid = fields_ud(f)
      if rec and uuid ~= '' then
        redis.call('HSET', P .. ':q', uuid, prio .. ' ' .. id)
      end
    end
    redis.call('XACK', stream, group, ARGV[i + 1])
    redis.call('XDEL', stream, ARGV[i + 1])
  end
  return n

elseif op == 'renew' then
  local group, consumer = ARGV[2], ARGV[3]
  local wanted = {}
  for i = 4, #ARGV, 2 do
    local ids = wanted[ARGV[i]]
    if not ids then ids = {}; wanted[ARGV[i]] = ids end
    ids[ARGV[i + 1]] = true
  end
  local n = 0
  for prio, ids in pairs(wanted) do
    local stream = P .. ':s:' .. prio
    local own = {}
    for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 100000, consumer)) do
      if ids[p[1]] then own[#own + 1] = p[1] end
    end
    if #own > 0 then
      -- JUSTID: resets the idle time without counting a delivery
      for j = 1, #own, 1000 do
        local args = {stream, group, consumer, 0}
        for k = j, math.min(j + 999, #own) do args[#args + 1] = own[k] end
        args[#args + 1] = 'JUSTID'
        redis.call('XCLAIM', unpack(args))
      end
      n = n + #own
    end
  end
  return n

elseif op == 'get' then
  local fields = get(ARGV[2], ARGV[3])
  return fields

elseif op == 'watch' then
  local fields, final = get(ARGV[2], ARGV[3])
  if fields and not final then redis.call('SADD', P .. ':wait', ARGV[3]) end
  return fields

elseif op == 'trim' then
  local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[3])
  for _, status in ipairs({'error', 'cancel'}) do
    redis.call('ZREMRANGEBYSCORE', P .. ':i:' .. status, '-inf', cutoff)
  end
  redis.call('XTRIM', P .. ':log', 'MINID', cutoff)
  return 1
end
return redis.error_reply('qtasks_fast.lua: unknown op ' .. tostring(op))
