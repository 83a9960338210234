-- qtasks_fast: every piece of server-side Redis logic, in one script.
--
-- Called as FCALL qtf_<sha8> 1 <P> <op> <rec> <args...> (a function library, Redis >= 7; EVALSHA <sha> with
-- the same arguments where the server has no FUNCTION command: see run at the end) where P is the queue's key
-- prefix "qtf:{<app>:<queue>}". The {...} hash tag puts every key below in one
-- Redis Cluster slot, so the script only touches keys of its own slot.
--
-- Keys it touches (all under P):
--   P:s:<prio>       stream of envelopes for one priority level (fields u=uuid, d=envelope)
--   P:q              hash uuid -> '<prio> <stream id>' of every message not yet finished:
--                    how a queued task is found by uuid before it has a record. ' <ms>' appended: when it
--                    was handed out (the started_at of a running task), written by op fetch for what it hands
--                    out. A task the broker's plain XREADGROUP handed out has none at first: its start is
--                    the PEL's delivery time (now - idle, what readers use without ' <ms>'), exact until op
--                    renew resets that idle time, so op renew writes it first (see keep_start). Plus one entry
--                    ' ht' that is no task's: it keeps the hash a hashtable (see QHT)
--   P:t:<uuid>       record of a finished task: a msgpack array [envelope (bin), status, updated ms (str),
--                    returning (bin), worker id, traceback, retry child, deliveries (int), started ms (int)],
--                    written once (SET PX ttl; op settle sends PSETEX: the same write, one argument less to
--                    convert and no options to parse) by the worker's settle; it exists only once the task is final.
--                    Records written before the delivery count (7 elements) and cancels (no delivery known)
--                    read as 1; before the start time (8 elements) or ended unrun (0) as not started
--   P:wait           set of uuids a producer awaits after their enqueue (op watch); settle pushes their P:r:<uuid>
--   P:r:<uuid>       reply list: the final record, pushed once for an awaited task (in P:wait, or listed in
--                    the settle's replies: the producer awaited it from its enqueue, envelope meta 'rw')
--   P:count          hash status -> tasks finished with it (counters for dashboards and metrics)
--   -- the query side (issue 12; written only with our records, read by qtasks_fast/backends/redis/query.py) --
--   P:x:n:<name>     zset uuid -> created ms (the envelope's created_at) of every task named <name>, from its enqueue until
--                    its record is gone: what lists every status (and new/process) newest first
--   P:x:f:<st>:<name>  zset of the same for the tasks of <name> that ended in error or cancel (<st>): a filtered
--                    page by name + one of these + created time is one ZRANGE. Success, the common end, has no
--                    zset of its own (one insert per task less on the hot path): its pages walk P:x:n:<name>,
--                    where most tasks are successes, and its count is what the others leave (see op count)
--   P:x:names        set of the task names with a P:x:n:<name> (a list without a name merges their zsets)
--                    The P:x zsets lose an entry in op 'trim' (and 'count') once its record expired (result_ttl)
--                    and the task is not queued (P:q); a read skips entries whose record is already gone
--   P:ev             stream of status changes, one entry per batch (c = how many, b = msgpack
--                    {uuid, status, task name, worker}*; the entry id = server time '<ms>-<µs in the ms>', see
--                    xadd_event): written by enqueue, fetch, settle, cancel, dead, purge, release, requeue,
--                    started; bounded as it is written to between the last 10,000 and ~20,000 events (P:evn:
--                    events written since it was last cut back, see trim_events) and to ~10,000 entries
--   P:evn            events written to P:ev since it was last cut back (see trim_events)
--   P:tp             hash '<minute epoch s> <status>' -> tasks finished in that minute (throughput; 'trim' drops
--                    minutes older than result_ttl)
--   P:rs:<uuid>      set of the uuids of tasks restarting <uuid> (app.restart), written by the broker from Python
--                    at their enqueue (rare), PEXPIRE result_ttl
--   P:dlq            dead-letter stream (fields u, d, reason, at, prio)
--   P:d              zset uuid -> due time (ms) of delayed envelopes (eta later than now at enqueue);
--                    P:q says 'd' for them
--   P:dm             hash uuid -> '<prio> <envelope>' of each delayed envelope: what the XADD needs later
--   P:wake           stream (MAXLEN 1): an enqueue adds to it when a delayed envelope is due sooner than any
--                    before it. Blocked workers read it with the priority streams, so an idle fleet learns
--                    the new due time at once instead of polling for it
--   P:u:<key>        unique enqueue: uuid of the task holding <key> (SET NX PX ttl)
--   P:uo             hash uuid -> '<holder uuid> <key>' of unfinished tasks whose end in error or cancel gives
--                    the caller's unique key <key> back (deleted only while it still names <holder uuid>)
--   P:cx             hash uuid -> reason of cancels asked for running tasks: a reclaimed entry found here is
--                    cancelled instead of run again (its worker died before it heard the request)
--   P:sem:<key>      zset token -> expiry ms: the slots of a fleet-wide concurrency limit
--   P:lg:<uuid>      list of log lines captured while the task ran (LogCapture), PEXPIRE result_ttl;
--                    written and read by RedisStorage from Python, never by this script
-- and publishes on the channel passed to 'cancel' (qtf:<app>:cancel; a channel is not a key).
--
-- Keys per app, outside every queue's slot, written and read by redis_control.py from Python, never here:
--   qtf:{<app>}:tasks      hash task name -> msgpack TaskSpec: the task table workers publish at start and
--                          producers read for names they have not imported (qtasks_fast/tasktable.py)
--   qtf:{<app>}:claim:<k>  leader claims (periodic ticks): SET NX PX
--   qtf:{<app>}:workers    hash '<consumer>@<host>:<pid>' -> msgpack WorkerInfo: the worker registry. Each
--                          worker process HSETs its entry when it starts serving and at every lease-keeper
--                          beat (lease_seconds / 3), HDELs it at a graceful stop; the hash gets PEXPIRE 2
--                          leases + LOST_KEPT at each beat. Entries whose heartbeat is older than lease_seconds
--                          are listed as lost (workers(include_lost=True)), and HDELed by the next listing
--                          once older than LOST_KEPT (a SIGKILLed worker ages out)
--   qtf:{<app>}:audit      stream of the audit log (control surfaces: who did what, when), field e = msgpack
--                          AuditEntry, XADD MAXLEN ~ AUDIT_KEPT (backends/redis/audit.py); kept by flush_all
--
-- A task is 'process' while its entry is pending in the group (XPENDING says which consumer,
-- i.e. which worker, holds it), so starting a task writes nothing.
--
-- Cost model: a task costs two commands of its own (XADD, SET of its record);
-- everything else (P:q, the P:x indexes, P:ev, counters, acks, waiters) is one command per
-- batch (per task name for P:x), because Redis is the shared bottleneck of a fleet. Finished entries leave
-- their stream by XTRIM MINID below the oldest pending entry (see tidy), not by XDEL.
--
-- Delayed and unique envelopes cost plain ones nothing: they travel in their own packed argument of
-- enqueue, and promotion of due envelopes is one ZRANGE per fetch on a key that does not exist.
--
-- <rec> is '1' when task records live in this Redis (RedisStorage) and '0' when
-- a foreign Storage keeps them: then P:q, P:t:*, P:wait, P:r:*, P:count, P:x:*, P:ev, P:tp are not touched.
--
-- Ops:
--   add     prio uuid blob name created event   (rec '1' only: enqueue of one plain envelope with the query side;
--                                        prio already clamped, created = its created_at ms, event = the msgpack
--                                        of its 'new' event {uuid, 'new', name, ''}; returns {} as enqueue does)
--   enqueue now nprios packed [special claimed unique_ttl owners [index]]
--           nprios = the priority levels workers serve: a prio outside 0..nprios-1 is clamped into them;
--           packed = msgpack array {prio uuid blob}* of plain envelopes, then their wait flag ('1': add them to
--           P:wait) once: every element is a Lua string or number unpacked here, so nothing per task that the
--           op does not use (their names travel in index);
--           index = the plain envelopes' query-side entries, built by the producer (see query_index; '0' =
--           none at all, index_results=False);
--           special = msgpack array {prio uuid name blob wait eta_ms unique_key unique_ttl_ms created}* of delayed
--           (created = the envelope's created_at in ms, the score of P:x)
--           or unique ones (claimed = '1': unique keys were claimed already by op 'unique').
--           owners = msgpack array {uuid, '<holder uuid> <key>'}* of special ones that give a key back (P:uo).
--           Returns {skipped uuid, holder uuid}* of unique envelopes whose key was held.
--   unique  unique_ttl {uuid key ttl_ms}*  (claim unique keys alone, for a foreign storage: same reply)
--   fetch   group consumer worker count now mode lease_ms max_deliveries nprios ttl {'prio id'}*
--           First promotes due delayed envelopes (at most 1000) to their streams.
--           mode 0 = new only; 1 = also reclaim entries idle > lease from any other consumer (never
--           <consumer>'s own: a live worker still runs them, however late its renewal), and take
--           one parked last attempt; 2 = also take over this consumer's own pending entries first
--           (a replacement process, or a worker whose fetch reply was lost in a connection failure:
--           it lists the entries it still runs as 'prio id' so they are left alone).
--           Returns {flat, again, due, dead}: flat = {prio, id, blob, deliveries}*; again = 1 when last
--           attempts may still wait under <consumer>:last (fetch again with mode 1); due = the ms
--           time the next delayed envelope is due (0 = none): the caller blocks no longer than that;
--           dead = {blob, reason}* of entries dead-lettered here (max_deliveries) when rec is off, whose
--           error records the caller writes to its foreign storage.
--           A reclaimed entry whose next delivery is its last (deliveries + 1 = max_deliveries) is
--           not handed out with others: it is parked under the consumer name <consumer>:last with
--           XCLAIM JUSTID (no delivery counted) and later handed out alone, as the only entry of a
--           fetch, and the worker runs it with nothing else in flight. So when a message kills its
--           worker on every run, the messages fetched with it are not charged deliveries they
--           never ran, and only the culprit reaches max_deliveries and the dead-letter stream.
--   settle  group now ttl packed log [replies [released]]
--           packed = msgpack array {prio id uuid record}* (record: see P:t, built by the worker), then the
--           batch's {status: 'tasks'} map for P:count and P:tp (counted by the worker, not per task here; the
--           counts as text, ready for HINCRBY: see EV_KEEP_TEXT);
--           log = the batch's query-side entries, built by the worker (see query_index; '' = none:
--           index_results=False); replies = msgpack array
--           of 0-based task positions in packed whose record the worker has stored and pushed to P:r:<uuid>
--           already ('' = none): for a task a producer blocks on, the worker sends SET P:t + RPUSH +
--           PEXPIRE P:r as plain commands and awaits them before this call, so the producer's wait ends
--           without waiting for this script; the ack still comes only after the record is stored.
--           released = msgpack array of the uuids (ended in error with no retry, or cancel) whose P:uo key
--           is given back; the P:uo entries of the others are dropped.
--           The log's events begin with the 'process' events of tasks a plain XREADGROUP handed out (the
--           worker carries them in the settle it sends anyway, instead of a call of op 'started'); their
--           start times are not written: see P:q.
--   started count events                (the P:ev entry, built by the broker, of the 'process' events of tasks
--                                        the broker's plain XREADGROUP fetches handed out that no settle carried
--                                        within 0.4 s: what op fetch records of the tasks it hands out)
--   dead    group now ttl {prio id reason deliveries}*   (uuid and body are read from the entry itself)
--   release group now consumer {prio id}*  (drain: re-add unrun entries at the tail, ack the old ones;
--                                        their status is new again; entries another consumer took
--                                        over are left alone)
--   renew   group consumer {prio id}*   (lease keeper: reset the idle time of entries this consumer
--                                        still owns, their start time kept in P:q first (see keep_start);
--                                        one taken over by another consumer stays theirs.
--                                        Returns {prio id}* of the entries still owned: the others are
--                                        lost, and the worker drops them unrun / leaves their outcome
--                                        to the new owner)
--   get     group uuid                  ({'R', record} when final, else fields e/s/wk/u of a queued or
--                                        running task, or false when unknown)
--   watch   group uuid                  (get, and add a queued or running task to P:wait)
--   trim    now ttl                     (drop P:x entries of records gone, P:tp minutes older than ttl, P:ev
--                                        events beyond the last 10,000)
--   list    group nprios status name cmin cmax cscore cuuid limit budget worker err fmin fmax
--           the query side's filtered page: up to <limit> tasks newest first (created_at, then uuid) strictly
--           after the cursor (cscore cuuid; '' = from the newest), created in [cmin, cmax] (ZRANGE BYSCORE
--           bounds), read from the narrowest P:x zset. worker = a consumer name or bare worker id, err = a
--           substring of the traceback lowered byte-wise (ASCII only: query.py passes part of the search and
--           re-checks the whole with Python's case rules), fmin/fmax = finished ms bounds [fmin, fmax) ('' =
--           any). Examines at most <budget> candidates, and stops after LIST_US of its own time (other
--           clients wait for a script). Returns {rows, more}: rows = {uuid score kind data...}* with kind 'R'
--           (data = the record), 'N' (data = envelope: queued) or 'P' (data = envelope, consumer, since ms:
--           running); more = '' when nothing older can match, 'limit' when <limit> rows were found, else (the budget ran
--           out) {score uuid searched total examined}: go on after that score and uuid; searched = the window's candidates
--           from it up (earlier pages too), total = all the window's candidates
--   count   group nprios name cmin cmax now ttl  ({new process success error cancel} counts of the tasks named
--                                        <name> ('' = any) created in [cmin, cmax]: ZCOUNTs once expired
--                                        entries are trimmed, 'process' from the PEL, the unfinished by a walk
--                                        of the backlog P:q or of the window (the smaller), success the rest)
--   depth   group nprios now             ({prio waiting}*, {consumer in_flight}*, delayed, dead)
--   cancel  group uuid reason now ttl nprios channel log   (log: unused, the index is always kept)
--           {'finished'} | {'queued', blob} (removed, record 'cancel') | {'running'} (pending in the
--           group: PUBLISH msgpack [uuid, reason] on channel, and remember it in P:cx) | {'unknown'}
--   requeue limit {id}*                 (dead letters back to their stream with a fresh delivery count,
--                                        records gone: status new; no ids = the oldest <limit>; returns n)
--   purgedead {id}*                     (delete dead letters, all without ids; returns how many)
--   purge   group now ttl limit log prio cursor   (log: unused)
--           drop up to <limit> entries that no worker runs: prio 'd' = delayed ones, else stream
--           P:s:<prio> after id <cursor>. Returns {n, scanned, last id, blob*}; records become 'cancel'
--           (blob* only without our records, for the foreign storage)
--   acquire key limit token ttl_ms      (take or renew a slot of P:sem:<key>; 1 or 0)
--   unslot  key token                   (give a slot back)
--   stats   group nprios now            ({waiting, in_flight, delayed, dead} of the queue, read-only:
--                                        waiting = entries not yet delivered to the group (XINFO GROUPS
--                                        lag; acked entries a stream still holds are not counted) plus
--                                        delayed envelopes already due; in_flight = entries pending in
--                                        the group; delayed = ZCARD P:d of those not due; dead = XLEN P:dlq)
--
-- enqueue and settle take their per-task fields as one msgpack string (cmsgpack is built into
-- Redis' Lua): one argument to parse instead of thousands, on both sides of the socket.

-- The call's state, set by run() before each op (every op is a function of its ARGV, see run at the end):
-- P = the queue's key prefix, rec = whether task records live in this Redis.
local P, rec

-- the query side (P:x, P:ev, P:tp): status changes collected by an op, written as one P:ev entry by emit().
-- Its P:ev writer comes first, then op 'add', before the other helpers are defined (see add).
local EV_KEEP = 10000
local EV = {}
-- A P:ev entry's id is the server's time in microseconds, '<ms>-<µs in that ms>', not '*' (whose sequence
-- restarts per stream): ids then order the entries of every queue's stream by when they were written, which
-- is what makes an event id a resume point across queues (query.py). Scripts run one at a
-- time, so the clock has moved on between two of them; an id not above the stream's last (a clock set back)
-- falls back to '*'.
-- Bounded at write time: an entry holds a whole batch (up to thousands of events), so MAXLEN alone (entries)
-- let a bulk enqueue with no worker running grow P:ev to ~220 MiB per queue. P:evn counts the events written
-- since the stream was last cut back; past 2 * EV_KEEP the entries holding the newest EV_KEEP events (at least)
-- are kept and the rest go (trim_events): a walk of EV_KEEP events' entries once per EV_KEEP events written.
local function trim_events()
  local seen, keep, cursor = 0, nil, '+'
  while seen < EV_KEEP do
    local chunk = redis.call('XREVRANGE', P .. ':ev', cursor, '-', 'COUNT', 1000)
    for _, e in ipairs(chunk) do
      seen = seen + (tonumber(e[2][2]) or 1)
      keep = e[1]
      if seen >= EV_KEEP then break end
    end
    if #chunk < 1000 then break end
    cursor = '(' .. chunk[#chunk][1]
  end
  if seen >= EV_KEEP then redis.call('XTRIM', P .. ':ev', 'MINID', keep) end
  if keep then redis.call('SET', P .. ':evn', seen) else redis.call('DEL', P .. ':evn') end
end
-- A Lua number passed to redis.call is made text by sprintf('%.14g') at every call (glibc's float printer:
-- ~3,500 instructions per number, 7 % of an add_task's Redis work for EV_KEEP and a count of 1), so the
-- numbers xadd_event sends are text: EV_KEEP as a literal, and a count once per call (op add passes '1').
local EV_KEEP_TEXT = '10000'  -- EV_KEEP as text (a library's top level has no string library at load)
local function xadd_event(count, packed)
  if type(count) ~= 'string' then count = string.format('%d', count) end
  local t = redis.call('TIME')
  -- '<s><ms in the s>-<µs in the ms>' cut from TIME's digits (µs in the second, no leading zeros), not computed
  -- through numbers: two tonumber (strtod) and a string.format were ~3,800 instructions of every add_task.
  -- The part after '-' may keep leading zeros ('045'): XADD reads it as the number (45)
  local us = t[2]
  local n = #us
  local id
  if n > 3 then
    id = t[1] .. string.rep('0', 6 - n) .. string.sub(us, 1, n - 3) .. '-' .. string.sub(us, n - 2)
  else
    id = t[1] .. '000-' .. us
  end
  local ok = redis.pcall('XADD', P .. ':ev', 'MAXLEN', '~', EV_KEEP_TEXT, id, 'c', count, 'b', packed)
  if type(ok) == 'table' and ok.err then
    redis.call('XADD', P .. ':ev', 'MAXLEN', '~', EV_KEEP_TEXT, '*', 'c', count, 'b', packed)
  end
  if redis.call('INCRBY', P .. ':evn', count) > 2 * EV_KEEP then trim_events() end
end
-- The common enqueue (one envelope, no delay, no unique key, our records, query side on): the same writes as op
-- enqueue's for a plain envelope (the XADD, P:q, P:x:n:<name>, P:x:names, its 'new' event in P:ev), without
-- unpacking a msgpack argument, and placed before the other helpers: run as an EVALSHA script (the fallback, see
-- run) a chunk runs from its top at every call and builds each local function it passes as a closure, so the
-- ops further down pay for ~40 of them (a function library defines them once, at load). Measured
-- with INFO commandstats on a private Redis 7.0 (busy 2-core VM): op enqueue of one envelope 40 µs of Redis time,
-- op add 26-28 µs, of which ~9 µs are its seven commands; a bare XADD 3 µs.
local OPS = {}  -- op name -> its function (see run)
function OPS.add(ARGV)
  local prio, uuid, name = ARGV[2], ARGV[3], ARGV[5]
  local id = redis.call('XADD', P .. ':s:' .. prio, '*', 'u', uuid, 'd', ARGV[4])
  redis.call('HSET', P .. ':q', uuid, prio .. ' ' .. id)
  redis.call('ZADD', P .. ':x:n:' .. name, ARGV[6], uuid)
  redis.call('SADD', P .. ':x:names', name)
  xadd_event('1', ARGV[7])
  return {}
end


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

-- Finished entries leave their stream by trimming, not by XDEL: XDEL seeks each id in its listpack
-- node (~1.3 µs of Redis per task), while XTRIM MINID drops whole nodes from the head. Every entry
-- below the group's oldest pending one was delivered and is no longer pending, i.e. finished (or
-- already deleted); with nothing pending, that holds up to the group's last-delivered-id. So after
-- acking <ids> of <stream>, tidy() drops the stream's nodes wholly below the oldest pending entry, or
-- (nothing pending) every entry up to and including the last delivered one. An entry acked while an older
-- one is still pending stays until that one finishes, and so do the finished entries that share a node
-- with the oldest pending one; when the oldest pending entry is older than STALE_MS (a long task, a dead
-- worker awaiting reclaim) the batch is deleted as before, so what lingers is bounded by a few seconds of
-- throughput. Entries that were delivered but are not pending are therefore finished ones: purge leaves them.
local STALE_MS = 5000
-- op 'list': Redis time one call may take (µs) before it returns what it found and where it stopped
local LIST_US = 1000
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

-- ms, seq of the group's last-delivered-id on <stream> (-1, -1 without the group)
local function last_delivered(stream, group)
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      local f = {}
      for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
      if f['name'] == group then return id_parts(f['last-delivered-id']) end
    end
  end
  return -1, -1
end

local function tidy(stream, group, ids, now)
  local pel = redis.pcall('XPENDING', stream, group)  -- pcall: the stream may be gone (FLUSHDB, data loss)
  if type(pel) ~= 'table' or pel.err then return end
  if pel[1] == 0 then
    -- An idle worker's settle of one task whose entry is all the stream holds: trim up to and including it
    -- (everything up to an acked id was delivered, and nothing is pending) without XINFO GROUPS, ~40,000 of an
    -- idle task's ~390,000 Redis instructions. Were that one entry another (ours deleted meanwhile), MINID
    -- still only drops what is at or below ours.
    if #ids == 1 and redis.call('XLEN', stream) == 1 then
      local ms, seq = string.match(ids[1], '^(%d+)%-(%d+)$')
      if ms then
        redis.call('XTRIM', stream, 'MINID', string.format('%s-%d', ms, tonumber(seq) + 1))
        return
      end
    end
    local ms, seq = last_delivered(stream, group)
    if seq >= 0 then redis.call('XTRIM', stream, 'MINID', string.format('%.0f-%.0f', ms, seq + 1)) end
    return
  end
  -- '~': whole nodes only. An exact MINID also walks the head node (up to stream-node-max-entries, 100) to flag
  -- its entries below pel[2] deleted, at every settle of a busy queue (~1,400 Redis instructions per task with
  -- settles of 25, issue 16); what it leaves is at most that one node, trimmed exactly once nothing is pending
  redis.call('XTRIM', stream, 'MINID', '~', pel[2])
  if id_parts(pel[2]) < tonumber(now) - STALE_MS then chunked('XDEL', stream, ids, 1) end
end

-- SET NX PX of a unique key: nil when taken for <uuid>, else the uuid holding it
local function claim_unique(key, uuid, ttl_ms, default_ttl)
  if tonumber(ttl_ms) <= 0 then ttl_ms = default_ttl end
  local k = P .. ':u:' .. key
  if redis.call('SET', k, uuid, 'NX', 'PX', ttl_ms) then return nil end
  return redis.call('GET', k) or ''
end

-- the end of task <uuid>: forget its P:uo entry and, when <release>, give its caller's unique key back if
-- the key still names the holder (a key claimed again since belongs to the new call)
local function unown(uuid, release)
  local o = redis.call('HGET', P .. ':uo', uuid)
  if not o then return end
  redis.call('HDEL', P .. ':uo', uuid)
  if release then
    local sp = string.find(o, ' ', 1, true)
    local k = P .. ':u:' .. string.sub(o, sp + 1)
    if redis.call('GET', k) == string.sub(o, 1, sp - 1) then redis.call('DEL', k) end
  end
end

local function emit()
  if #EV > 0 then
    xadd_event(#EV / 4, cmsgpack.pack(EV))
    EV = {}
  end
end
local function zadd_all(by)  -- by = {key -> {score, member, ...}}
  for key, pairs_ in pairs(by) do chunked('ZADD', key, pairs_, 2) end
end
local FINAL = {success = true, error = true, cancel = true}
-- P:q stays in Redis' hashtable encoding: a hash of up to hash-max-listpack-entries (512 unless configured) short
-- fields is a listpack, where every HSET and HDEL scans the entries one by one, so a queue whose P:q holds a few
-- hundred queued and running tasks (a fleet that keeps up) paid a walk of them per task at enqueue and settle, and
-- the first bulk enqueue into an empty queue (P:q gone) 3 ms instead of 0.6 per 1000 tasks (one HSET, Redis 7.0).
-- A value longer than hash-max-listpack-value (64) converts a hash before an HSET inserts anything, so the batch
-- ops (enqueue, settle) write this entry first; it keeps P:q from ever being deleted when it empties,
-- so a queue that saw one batch op stays a hashtable (op add, one task per call, leaves a new P:q as it is:
-- small ones are cheap either way). No uuid is ' ht' (a leading space); readers look P:q up by uuid, and
-- op count's walk of it matches entries against the P:x zsets, which never hold it.
local QHT, QHT_WHY = ' ht', 'this entry keeps the hash in the hashtable encoding (see redis.lua, QHT)'
local RARE = {error = true, cancel = true}  -- the final statuses with a P:x:f zset

-- the query-side argument of enqueue and settle, built by the client (qtasks_fast/_core.pyx, _index_arg) so
-- that Redis only stores it: msgpack [{key: {created ms, uuid}*}, events, count] with <key> a task name
-- (P:x:n:<key>) or '<status>:<name>' (P:x:f:<key>), and events the P:ev entry of <count> status changes, as is
-- (a settle's also holds the 'process' events of tasks a plain XREADGROUP handed out, first: see op settle).
-- Returns the zsets' keys (names for P:x:names).
-- The scores arrive as msgpack integers, i.e. Lua numbers, which redis.call would turn into text with
-- snprintf('%.17g') once per member (the float formatter: ~3 % of Redis' CPU in a no-op drain, perf). A bulk
-- enqueue's tasks share a few created ms, so each distinct integer score is made text once ('%d': the same
-- score for Redis, exact below 2^53) and the member's slot reuses it; a non-integer score stays a number.
local function scores_text(z)
  local memo = {}
  for j = 1, #z, 2 do
    local c = z[j]
    if type(c) == 'number' then
      local s = memo[c]
      if s == nil then
        s = (c == math.floor(c) and c > -9e15 and c < 9e15) and string.format('%d', c) or c
        memo[c] = s
      end
      z[j] = s
    end
  end
  return z
end
local function query_index(arg, zprefix)
  local ix = cmsgpack.unpack(arg)
  local keys = {}
  for key, z in pairs(ix[1]) do
    chunked('ZADD', zprefix .. key, scores_text(z), 2)
    keys[#keys + 1] = key
  end
  xadd_event(ix[3], ix[2])
  return keys
end

function OPS.enqueue(ARGV)
  local now = ARGV[2]
  local top = tonumber(ARGV[3]) - 1  -- priorities are clamped to the served levels: no stream nobody reads
  local items = cmsgpack.unpack(ARGV[4])
  local nplain = #items - 1  -- {prio uuid blob}* then the wait flag, once for all of them
  local wait = items[nplain + 1] == '1'
  local queued, waiting, streams = {QHT, QHT_WHY}, {}, {}  -- queued: HSET P:q's arguments (see QHT)
  local byname, names = {}, {}  -- P:x:n:<name> -> {created, uuid, ...}; the names
  local function index(uuid, name, created)
    local key = P .. ':x:n:' .. name
    local z = byname[key]
    if not z then z = {}; byname[key] = z; names[#names + 1] = name end
    z[#z + 1] = created
    z[#z + 1] = uuid
    local n = #EV
    EV[n + 1] = uuid; EV[n + 2] = 'new'; EV[n + 3] = name; EV[n + 4] = ''
  end
  local nq, heads = 2, {}  -- heads: prio -> '<prio> ', the number made text once per level, not once per task
  for i = 1, nplain, 3 do
    local prio, uuid = items[i], items[i + 1]
    if prio > top then prio = top elseif prio < 0 then prio = 0 end
    local stream = streams[prio]
    if not stream then stream = P .. ':s:' .. prio; streams[prio] = stream; heads[prio] = prio .. ' ' end
    local id = redis.call('XADD', stream, '*', 'u', uuid, 'd', items[i + 2])
    queued[nq + 1] = uuid
    queued[nq + 2] = heads[prio] .. id
    nq = nq + 2
    if wait then waiting[#waiting + 1] = uuid end
  end
  local skipped = {}
  if ARGV[5] and ARGV[5] ~= '' then
    local sp = cmsgpack.unpack(ARGV[5])
    local claimed, nowms = ARGV[6] == '1', tonumber(now)
    local owners = {}
    if ARGV[8] and ARGV[8] ~= '' then
      local o = cmsgpack.unpack(ARGV[8])
      for i = 1, #o, 2 do owners[o[i]] = o[i + 1] end
    end
    local first, wake  -- earliest due time before this enqueue; the new earliest, if it moved
    for i = 1, #sp, 9 do
      local prio, uuid, blob, eta = sp[i], sp[i + 1], sp[i + 3], sp[i + 5]
      if prio > top then prio = top elseif prio < 0 then prio = 0 end
      local holder = nil
      if sp[i + 6] ~= '' and not claimed then holder = claim_unique(sp[i + 6], uuid, sp[i + 7], ARGV[7]) end
      if holder then
        skipped[#skipped + 1] = uuid
        skipped[#skipped + 1] = holder
      else
        if owners[uuid] then redis.call('HSET', P .. ':uo', uuid, owners[uuid]) end
        if tonumber(eta) > nowms then
          if first == nil then
            local head = redis.call('ZRANGE', P .. ':d', 0, 0, 'WITHSCORES')
            first = head[2] and tonumber(head[2]) or math.huge
          end
          redis.call('ZADD', P .. ':d', eta, uuid)
          redis.call('HSET', P .. ':dm', uuid, prio .. ' ' .. blob)
          if tonumber(eta) < first then first, wake = tonumber(eta), eta end
          queued[#queued + 1] = uuid
          queued[#queued + 1] = 'd'
        else
          local id = redis.call('XADD', P .. ':s:' .. prio, '*', 'u', uuid, 'd', blob)
          queued[#queued + 1] = uuid
          queued[#queued + 1] = prio .. ' ' .. id
        end
        if sp[i + 4] == '1' then waiting[#waiting + 1] = uuid end
        if rec then index(uuid, sp[i + 2], sp[i + 8]) end
      end
    end
    if wake then redis.call('XADD', P .. ':wake', 'MAXLEN', 1, '*', 'due', wake) end
  end
  if rec then
    chunked('HSET', P .. ':q', queued, 2)
    if #waiting > 0 then chunked('SADD', P .. ':wait', waiting, 1) end
    if ARGV[9] == '0' then  -- index_results=False: no query side
      EV = {}
    else
      if ARGV[9] and ARGV[9] ~= '' then
        for _, name in ipairs(query_index(ARGV[9], P .. ':x:n:')) do names[#names + 1] = name end
      end
      zadd_all(byname)  -- the special envelopes', indexed here: only this script knows which were skipped
      if #names > 0 then redis.call('SADD', P .. ':x:names', unpack(names)) end
      emit()
    end
  end
  return skipped
end

function OPS.started(ARGV)  -- see the header: the broker's plain XREADGROUP fetches
  xadd_event(ARGV[2], ARGV[3])
  return 1
end

function OPS.settle(ARGV)
  local group, now, ttl = ARGV[2], ARGV[3], ARGV[4]
  local items = cmsgpack.unpack(ARGV[5])
  local n = #items - 1  -- {prio id uuid record}* then {status: tasks} of the batch
  local counts = items[n + 1]
  local acks, uuids, done = {}, {}, {}
  -- the records for notify() only when some producer waits (rarely, in a busy drain)
  local waited = rec and redis.call('SCARD', P .. ':wait') > 0
  local prefix = P .. ':t:'
  local stored = {}  -- positions (1-based item index) whose record the worker stored and pushed already
  if ARGV[7] and ARGV[7] ~= '' then
    for _, k in ipairs(cmsgpack.unpack(ARGV[7])) do stored[k * 4 + 1] = true end
  end
  -- lengths kept in counters: '#t' is a binary search in Lua 5.1, three of them per task here before
  local nu, nd, nacked, last, ids = 0, 0, {}, nil, nil
  for i = 1, n, 4 do
    local prio, id, uuid = items[i], items[i + 1], items[i + 2]
    if rec then
      if not stored[i] then redis.call('PSETEX', prefix .. uuid, ttl, items[i + 3]) end
      nu = nu + 1
      uuids[nu] = uuid
      if waited then
        done[nd + 1] = uuid
        done[nd + 2] = items[i + 3]
        nd = nd + 2
      end
    end
    if prio ~= last then  -- a batch is mostly one priority: its ids list is looked up once per run of it
      ids = acks[prio]
      if not ids then ids = {}; acks[prio] = ids; nacked[prio] = 0 end
      last = prio
    end
    local k = nacked[prio] + 1
    ids[k] = id
    nacked[prio] = k
  end
  -- P:uo (unique keys to give back) and P:cx (cancels asked for running tasks) are rare: one EXISTS of both
  -- tells that neither is there, a call less per settle (a settle of one task makes ~15 calls)
  local uo, cx = false, false
  if redis.call('EXISTS', P .. ':uo', P .. ':cx') > 0 then
    uo, cx = redis.call('EXISTS', P .. ':uo') == 1, redis.call('EXISTS', P .. ':cx') == 1
  end
  if uo then
    local released = {}
    if ARGV[8] and ARGV[8] ~= '' then
      for _, u in ipairs(cmsgpack.unpack(ARGV[8])) do released[u] = true end
    end
    for i = 3, n, 4 do unown(items[i], released[items[i]]) end
  end
  if cx then
    local settled = {}
    for i = 3, n, 4 do settled[#settled + 1] = items[i] end
    chunked('HDEL', P .. ':cx', settled, 1)
  end
  if rec then
    redis.call('HSET', P .. ':q', QHT, QHT_WHY)  -- before the HDEL: a P:q only op add wrote (see QHT)
    chunked('HDEL', P .. ':q', uuids, 1)
    for status, c in pairs(counts) do redis.call('HINCRBY', P .. ':count', status, c) end
    if ARGV[6] ~= '' then
      query_index(ARGV[6], P .. ':x:f:')
      local minute = string.format('%d ', math.floor(tonumber(now) / 60000) * 60)  -- text once (see EV_KEEP_TEXT)
      for status, c in pairs(counts) do redis.call('HINCRBY', P .. ':tp', minute .. status, c) end
    end
    if waited then notify(done, ttl) end
  end
  for prio, ids in pairs(acks) do
    local stream = P .. ':s:' .. prio
    chunked('XACK', stream, ids, 1, group)
    tidy(stream, group, ids, now)
  end
  return n / 4
end

-- Everything below is defined only for the other ops: as an EVALSHA script, a closure made per call costs Redis ~0.2 µs.

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

-- the task name of an envelope blob, for the P:x index: our envelopes start {u: <uuid>, n: <name>, ...}
-- (cmsgpack cannot read msgpack bin, which arguments may hold); '' when the blob is not one of ours
local function env_name(blob)
  local pos = 2
  local b = string.byte(blob, 1)
  if not b then return '' end
  if b == 0xde then pos = 4 elseif b == 0xdf then pos = 6 elseif b < 0x80 or b > 0x8f then return '' end
  local function str()
    local h = string.byte(blob, pos)
    if not h then return nil end
    local n
    if h >= 0xa0 and h <= 0xbf then n = h - 0xa0; pos = pos + 1
    elseif h == 0xd9 then n = string.byte(blob, pos + 1); pos = pos + 2
    else return nil end
    if not n then return nil end
    local x = string.sub(blob, pos, pos + n - 1)
    pos = pos + n
    return x
  end
  for _ = 1, 2 do
    local k, v = str(), str()
    if k == nil or v == nil then return '' end
    if k == 'n' then return v end
  end
  return ''
end

-- msgpack: the position after the <n> values that start at <pos> of <s>, nil when <s> ends first. A loop, not a
-- recursion: a body nested thousands deep costs no Lua stack, and each step consumes at least one byte.
local function mp_skip(s, pos, n)
  local function be(at, k)
    local v = 0
    for j = at, at + k - 1 do
      local b = string.byte(s, j)
      if not b then return nil end
      v = v * 256 + b
    end
    return v
  end
  while n > 0 do
    local b = string.byte(s, pos)
    if not b then return nil end
    n = n - 1
    if b <= 0x7f or b >= 0xe0 or (b >= 0xc0 and b <= 0xc3) then pos = pos + 1       -- fixint, nil, bool
    elseif b <= 0x8f then n = n + 2 * (b - 0x80); pos = pos + 1                         -- fixmap
    elseif b <= 0x9f then n = n + (b - 0x90); pos = pos + 1                             -- fixarray
    elseif b <= 0xbf then pos = pos + 1 + b - 0xa0                                      -- fixstr
    elseif b == 0xca or b == 0xce or b == 0xd2 then pos = pos + 5
    elseif b == 0xcb or b == 0xcf or b == 0xd3 then pos = pos + 9
    elseif b == 0xcc or b == 0xd0 then pos = pos + 2
    elseif b == 0xcd or b == 0xd1 then pos = pos + 3
    elseif b >= 0xd4 and b <= 0xd8 then pos = pos + 2 + ({1, 2, 4, 8, 16})[b - 0xd3]     -- fixext
    else
      local k = (b == 0xc4 or b == 0xc7 or b == 0xd9) and 1 or (b == 0xc5 or b == 0xc8 or b == 0xda or b == 0xdc
        or b == 0xde) and 2 or (b == 0xc6 or b == 0xc9 or b == 0xdb or b == 0xdd or b == 0xdf) and 4 or nil
      if not k then return nil end
      local len = be(pos + 1, k)
      if not len then return nil end
      pos = pos + 1 + k
      if b == 0xdc or b == 0xdd then n = n + len                                         -- array 16/32
      elseif b == 0xde or b == 0xdf then n = n + 2 * len                                 -- map 16/32
      elseif b >= 0xc7 and b <= 0xc9 then pos = pos + 1 + len                            -- ext: type byte + data
      else pos = pos + len end                                                           -- bin, str
    end
  end
  return pos
end

-- does envelope <blob> carry meta 'rw' (its producer blocks on the reply list P:r:<uuid>, see settle's replies)?
-- Our envelopes are a map with short str keys; the meta map is under key 'm'.
local function awaited(blob)
  local function map_at(pos)  -- pairs of the map at pos, and where its first key starts
    local b = string.byte(blob, pos)
    if b and b >= 0x80 and b <= 0x8f then return b - 0x80, pos + 1 end
    local hi, lo = string.byte(blob, pos + 1, pos + 2)
    if b == 0xde and lo then return hi * 256 + lo, pos + 3 end
    return nil
  end
  local function key_at(pos)  -- a fixstr key ('' for any other) and where its value starts
    local b = string.byte(blob, pos)
    if b and b >= 0xa0 and b <= 0xbf then return string.sub(blob, pos + 1, pos + b - 0xa0), pos + 1 + b - 0xa0 end
    return '', mp_skip(blob, pos, 1)
  end
  local n, pos = map_at(1)
  for _ = 1, n or 0 do
    local k
    k, pos = key_at(pos)
    if not pos then return false end
    if k == 'm' then
      local mn, mpos = map_at(pos)
      for _ = 1, mn or 0 do
        k, mpos = key_at(mpos)
        if k == 'rw' then return true end
        mpos = mpos and mp_skip(blob, mpos, 1)
        if not mpos then return false end
      end
      return false
    end
    pos = mp_skip(blob, pos, 1)
    if not pos then return false end
  end
  return false
end

-- the final record of a task ended here rather than by a worker (dead letter, cancel, purge):
-- the P:t format, written by hand (cmsgpack knows no bin type), with the index and waiters kept
-- as settle keeps them (its P:ev event is collected in EV: the op calls emit()).
-- deliveries = the message's delivery count when known (an 8th element), nil otherwise.
local function final(uuid, blob, status, tb, now, ttl, deliveries)
  local n = tonumber(deliveries)
  local r = string.char(n and 0x98 or 0x97) .. mp('bin', blob) .. mp('str', status) .. mp('str', now)
    .. mp('bin', '') .. mp('str', '') .. mp('str', tb) .. mp('str', '')
  if n then
    n = math.max(0, math.floor(n))
    if n < 128 then r = r .. string.char(n)
    else r = r .. '\206' .. string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256) end
  end
  redis.call('SET', record(uuid), r, 'PX', ttl)
  redis.call('HDEL', P .. ':q', uuid)
  redis.call('HINCRBY', P .. ':count', status, 1)
  local name = env_name(blob)
  local created = redis.call('ZSCORE', P .. ':x:n:' .. name, uuid) or now
  redis.call('ZADD', P .. ':x:f:' .. status .. ':' .. name, created, uuid)
  redis.call('HINCRBY', P .. ':tp', math.floor(tonumber(now) / 60000) * 60 .. ' ' .. status, 1)
  local e = #EV
  EV[e + 1] = uuid; EV[e + 2] = status; EV[e + 3] = name; EV[e + 4] = ''
  -- a producer blocked on add_task(timeout=...) is woken with the reason at once, as settle wakes it
  if awaited(blob) and redis.call('SISMEMBER', P .. ':wait', uuid) == 0 then
    local rk = P .. ':r:' .. uuid
    redis.call('RPUSH', rk, r)
    redis.call('PEXPIRE', rk, ttl)
  end
  notify({uuid, r}, ttl)
end

local function to_dlq(group, prio, id, uuid, reason, blob, now, ttl, deliveries)
  local stream = P .. ':s:' .. prio
  redis.call('XADD', P .. ':dlq', '*', 'u', uuid, 'd', blob, 'reason', reason, 'at', now, 'prio', prio)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  if uuid ~= '' then unown(uuid, true) end
  if rec and uuid ~= '' then final(uuid, blob, 'error', 'dead-lettered: ' .. reason, now, ttl, deliveries) end
end

-- a function telling whether the group has delivered entry <id> of <stream> already
local function delivered_by(stream, group)
  local lms, lseq = last_delivered(stream, group)
  return function(id)
    local ms, seq = id_parts(id)
    return ms < lms or (ms == lms and seq <= lseq)
  end
end

-- '<prio> <envelope>' of a delayed envelope (P:dm) split in two
local function split_delayed(m)
  local sp = string.find(m, ' ', 1, true)
  return string.sub(m, 1, sp - 1), string.sub(m, sp + 1)
end

-- move up to 1000 due delayed envelopes to their streams; returns the ms time the next one is due
-- ('0' = none). Only a ZRANGE of a missing key when nothing is delayed.
local function promote(now)
  local head = redis.call('ZRANGE', P .. ':d', 0, 0, 'WITHSCORES')
  if #head == 0 then return '0' end
  if tonumber(head[2]) > tonumber(now) then return head[2] end
  local due = redis.call('ZRANGE', P .. ':d', '-inf', now, 'BYSCORE', 'LIMIT', 0, 1000)
  local queued = {}
  for _, uuid in ipairs(due) do
    local m = redis.call('HGET', P .. ':dm', uuid)
    if m then
      local prio, blob = split_delayed(m)
      local id = redis.call('XADD', P .. ':s:' .. prio, '*', 'u', uuid, 'd', blob)
      queued[#queued + 1] = uuid
      queued[#queued + 1] = prio .. ' ' .. id
    end
  end
  chunked('ZREM', P .. ':d', due, 1)
  chunked('HDEL', P .. ':dm', due, 1)
  if rec and #queued > 0 then chunked('HSET', P .. ':q', queued, 2) end
  head = redis.call('ZRANGE', P .. ':d', 0, 0, 'WITHSCORES')
  return head[2] or '0'
end

-- a cancel asked for a running task whose entry is now being reclaimed: end it instead of running it again
local function cancelled_on_reclaim(group, prio, id, fields, now, ttl)
  local uuid, blob = fields_ud(fields)
  local reason = uuid ~= '' and redis.call('HGET', P .. ':cx', uuid)
  if not reason then return false end
  local stream = P .. ':s:' .. prio
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('HDEL', P .. ':cx', uuid)
  unown(uuid, true)
  if rec then final(uuid, blob, 'cancel', reason, now, ttl) end
  return true
end

-- is entry <id> of <stream> held by a worker (pending, and not parked for a last attempt)? also
-- returns whether it is pending at all. pcall: before any worker started there is no group yet.
local function held_by_worker(stream, group, id)
  local pel = redis.pcall('XPENDING', stream, group, id, id, 1)
  local pending = type(pel) == 'table' and not pel.err and pel[1]
  if not pending then return false, false end
  return not string.find(pending[2], ':last', 1, true), true
end

-- fields of a task by uuid: its record when final, else synthesized from P:q, its entry and the PEL
local function get(group, uuid)
  local r = redis.call('GET', record(uuid))
  if r then return {'R', r}, true end
  local where = redis.call('HGET', P .. ':q', uuid)
  if not where then return false, false end
  if where == 'd' then
    local m = redis.call('HGET', P .. ':dm', uuid)
    if not m then return false, false end
    local _, blob = split_delayed(m)
    return {'e', blob, 's', 'new'}, false
  end
  local prio, id, since = string.match(where, '^(%S+) (%S+) ?(%d*)')
  local entry = redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1]
  if not entry then return false, false end
  local _, blob = fields_ud(entry[2])
  -- pcall: before any worker started there is no group yet, and nothing is pending
  local pel = redis.pcall('XPENDING', P .. ':s:' .. prio, group, id, id, 1)
  local pending = type(pel) == 'table' and not pel.err and pel[1]
  if pending and not string.find(pending[2], ':last', 1, true) then
    local t = redis.call('TIME')
    local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(pending[3])
    if since ~= '' then at = since end
    return {'e', blob, 's', 'process', 'wk', pending[2], 'u', tostring(at)}, false
  end
  return {'e', blob, 's', 'new'}, false
end

-- entries of <stream> waiting for the group (not delivered yet: XINFO GROUPS lag; acked entries the stream still
-- holds are not counted), and those in flight (pending)
local function stream_waiting(stream, group)
  local len = redis.call('XLEN', stream)
  if len == 0 then return 0, 0 end
  local g = nil
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if type(groups) == 'table' and not groups.err then
    for _, raw in ipairs(groups) do
      local f = {}
      for j = 1, #raw, 2 do f[raw[j]] = raw[j + 1] end
      if f['name'] == group then g = f end
    end
  end
  if not g then return len, 0 end  -- no worker ever read it: everything waits
  if type(g['lag']) == 'number' then return g['lag'], g['pending'] end
  -- lag unknown (an entry deleted after the last delivered one, e.g. a cancel): what is left of
  -- the stream once the delivered entries still in it (pending, or acked and not yet trimmed, a
  -- few seconds' worth at most, see tidy) are taken off
  local seen, cursor, last = 0, '-', g['last-delivered-id']
  while true do
    local chunk = redis.call('XRANGE', stream, cursor, last, 'COUNT', 1000)
    seen = seen + #chunk
    if #chunk < 1000 then break end
    cursor = '(' .. chunk[#chunk][1]
  end
  return len - seen, g['pending']
end

-- ---------------------------------------------------------------- the query side: reads and trimming
-- element <k> (1-based) of record <r> (a msgpack fixarray, see P:t) as a string; '' when absent or not a str
-- (a small int is returned as its digits)
local function rfield(r, k)
  local pos = mp_skip(r, 2, k - 1)
  local b = pos and string.byte(r, pos)
  if not b then return '' end
  local n, at
  if b >= 0xa0 and b <= 0xbf then n, at = b - 0xa0, pos + 1
  elseif b == 0xd9 then n, at = string.byte(r, pos + 1), pos + 2
  elseif b == 0xda then
    local h, l = string.byte(r, pos + 1, pos + 2)
    n, at = h * 256 + l, pos + 3
  elseif b == 0xdb then
    local a, c, d, e = string.byte(r, pos + 1, pos + 4)
    n, at = ((a * 256 + c) * 256 + d) * 256 + e, pos + 5
  elseif b <= 0x7f then return tostring(b)
  else return '' end
  return string.sub(r, at, at + n - 1)
end

-- does consumer name <w> match filter <want>: the same name, or <want> is its bare worker id (<want>-<digits>)?
local function worker_matches(w, want)
  if want == '' or w == want then return true end
  return string.sub(w, 1, #want + 1) == want .. '-' and string.match(string.sub(w, #want + 2), '^%d+$') ~= nil
end

local function ms_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- the state of an unfinished task: 'N', envelope (queued or delayed) | 'P', envelope, consumer, since ms
-- (running) | nil (unknown: expired, deleted)
local function live_state(group, uuid)
  local where = redis.call('HGET', P .. ':q', uuid)
  if not where then return nil end
  if where == 'd' then
    local m = redis.call('HGET', P .. ':dm', uuid)
    if not m then return nil end
    local _, blob = split_delayed(m)
    return 'N', blob
  end
  local prio, id, since = string.match(where, '^(%S+) (%S+) ?(%d*)')
  local entry = prio and redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1]
  if not entry then return nil end
  local _, blob = fields_ud(entry[2])
  local pel = redis.pcall('XPENDING', P .. ':s:' .. prio, group, id, id, 1)
  local pending = type(pel) == 'table' and not pel.err and pel[1]
  if pending and not string.find(pending[2], ':last', 1, true) then
    return 'P', blob, pending[2], since ~= '' and since or tostring(ms_now() - tonumber(pending[3]))
  end
  return 'N', blob
end

-- the running tasks (named <name>, '' = any) as {created, uuid, envelope, consumer, since ms}*: from the PEL,
-- whose size the fleet's capacity bounds, rather than from a walk of every task
local function running(group, nprios, name)
  local out, now = {}, ms_now()
  for prio = 0, nprios - 1 do
    local stream = P .. ':s:' .. prio
    local pel = redis.pcall('XPENDING', stream, group, '-', '+', 100000)
    if type(pel) == 'table' and not pel.err then
      for _, p in ipairs(pel) do
        if not string.find(p[2], ':last', 1, true) then
          local entry = redis.call('XRANGE', stream, p[1], p[1])[1]
          local uuid, blob = '', ''
          if entry then uuid, blob = fields_ud(entry[2]) end
          local nm = uuid ~= '' and env_name(blob)
          if nm and (name == '' or nm == name) then
            local created = redis.call('ZSCORE', P .. ':x:n:' .. nm, uuid)
            local since = string.match(redis.call('HGET', P .. ':q', uuid) or '', '^%S+ %S+ (%d+)')
            if created then out[#out + 1] = {created, uuid, blob, p[2], since or tostring(now - tonumber(p[3]))} end
          end
        end
      end
    end
  end
  return out
end

-- the P:x zsets a filter on <name> ('' = any) and <status> ('' = any) reads
local function xkeys(name, status)
  local names = name ~= '' and {name} or redis.call('SMEMBERS', P .. ':x:names')
  local keys = {}
  for _, n in ipairs(names) do
    keys[#keys + 1] = RARE[status] and (P .. ':x:f:' .. status .. ':' .. n) or (P .. ':x:n:' .. n)
  end
  return keys, names
end

-- drop up to <limit> entries of zset <key> created before <cutoff> (ms) whose record is gone (result_ttl, deleted)
-- and that are not queued either. Returns how many went.
local function trim_index(key, cutoff, limit)
  local old = redis.call('ZRANGE', key, '-inf', cutoff, 'BYSCORE', 'LIMIT', 0, limit)
  local gone = {}
  for _, uuid in ipairs(old) do
    if redis.call('EXISTS', record(uuid)) == 0 and redis.call('HEXISTS', P .. ':q', uuid) == 0 then
      gone[#gone + 1] = uuid
    end
  end
  if #gone > 0 then chunked('ZREM', key, gone, 1) end
  return #gone
end

-- numeric bounds of ZRANGE BYSCORE arguments ('-inf', '(x', 'x', '+inf'): lo <= score, score < hi (or <=)
local function bounds(cmin, cmax)
  local lo = tonumber((string.gsub(cmin, '^%(', ''))) or -math.huge
  local open = string.sub(cmax, 1, 1) == '('
  local hi = tonumber((string.gsub(cmax, '^%(', ''))) or math.huge
  return function(sc)
    local x = tonumber(sc)
    return x >= lo and (x < hi or (not open and x == hi))
  end
end

function OPS.unique(ARGV)
  local skipped = {}
  for i = 3, #ARGV, 3 do
    local holder = claim_unique(ARGV[i + 1], ARGV[i], ARGV[i + 2], ARGV[2])
    if holder then
      skipped[#skipped + 1] = ARGV[i]
      skipped[#skipped + 1] = holder
    end
  end
  return skipped

end

function OPS.fetch(ARGV)
  local group, consumer, worker = ARGV[2], ARGV[3], ARGV[4]
  local count, now, mode = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
  local lease, maxd, nprios, ttl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
  local park = consumer .. ':last'
  local held = {}
  for i = 12, #ARGV do held[ARGV[i]] = true end
  local nheld = #ARGV - 11
  local due = promote(now)
  local cx = mode >= 1 and redis.call('EXISTS', P .. ':cx') == 1
  local out, started = {}, {}  -- started: P:q entries with the time handed out
  local dead = {}  -- without rec: [body, reason, ...] of the entries dead-lettered here
  local left = count
  local function take(prio, id, fields, deliveries)
    -- without both a uuid and a body, the body is passed on empty so that the worker
    -- dead-letters the entry as malformed
    local uuid, blob = fields_ud(fields)
    if uuid == '' then blob = '' end
    if rec and uuid ~= '' then
      local e = #EV
      EV[e + 1] = uuid; EV[e + 2] = 'process'; EV[e + 3] = env_name(blob); EV[e + 4] = worker
      started[#started + 1] = uuid
      started[#started + 1] = prio .. ' ' .. id .. ' ' .. now
    end
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
      elseif cx and cancelled_on_reclaim(group, prio, id, entry[2], now, ttl) then
        -- cancelled while its worker was gone: ended, not run again
      elseif delivered >= maxd then
        local uuid, blob = fields_ud(entry[2])
        local why = 'delivered ' .. delivered .. ' times without finishing (max_deliveries=' .. maxd .. ')'
        to_dlq(group, prio, id, uuid, why, blob, now, ttl, delivered)
        if not rec and uuid ~= '' then  -- a foreign storage: the caller writes the error record
          dead[#dead + 1] = blob
          dead[#dead + 1] = why
        end
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
      -- <consumer>'s own late entries are skipped: it is alive (it is fetching), it still runs them,
      -- and its next renewal keeps them; reclaiming them would run them twice here
      local stale, others = redis.call('XPENDING', stream, group, 'IDLE', lease, '-', '+', left), {}
      for _, p in ipairs(stale) do
        if p[2] ~= consumer then others[#others + 1] = p end
      end
      claim(prio, stream, others, false)
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
  if #started > 0 then chunked('HSET', P .. ':q', started, 2) end
  emit()
  return {out, again, due, dead}

end

function OPS.dead(ARGV)
  local group, now, ttl = ARGV[2], ARGV[3], ARGV[4]
  local n = 0
  for i = 5, #ARGV, 4 do
    local prio, id = ARGV[i], ARGV[i + 1]
    local entry = redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1]
    local uuid, blob = '', ''
    if entry then uuid, blob = fields_ud(entry[2]) end
    to_dlq(group, prio, id, uuid, ARGV[i + 2], blob, now, ttl, ARGV[i + 3])
    n = n + 1
  end
  emit()
  return n

end

function OPS.release(ARGV)
  local group, now, consumer = ARGV[2], ARGV[3], ARGV[4]
  local n = 0
  local touched = {}
  for i = 5, #ARGV, 2 do
    -- A fresh entry wakes blocked consumers at once; waiting for a lease would stall the drain.
    local prio, old = ARGV[i], ARGV[i + 1]
    local stream = P .. ':s:' .. prio
    -- only what this consumer still holds: an entry another one took over (this worker was frozen or cut
    -- off past its lease) runs there, and a copy handed back here would run it twice. pcall: no group yet
    local pel = redis.pcall('XPENDING', stream, group, old, old, 1)
    local mine = type(pel) == 'table' and not pel.err and pel[1] and pel[1][2] == consumer
    if mine then
      local entry = redis.call('XRANGE', stream, old, old)[1]
      if entry then
        local f = entry[2]
        local id = redis.call('XADD', stream, '*', unpack(f))
        n = n + 1
        -- nobody runs it now: its status is new again, at its new place in the stream
        local uuid, blob = fields_ud(f)
        if rec and uuid ~= '' then
          redis.call('HSET', P .. ':q', uuid, prio .. ' ' .. id)
          local e = #EV
          EV[e + 1] = uuid; EV[e + 2] = 'new'; EV[e + 3] = env_name(blob); EV[e + 4] = ''
        end
      end
      redis.call('XACK', stream, group, old)
      redis.call('XDEL', stream, old)
      touched[stream] = true
    end
  end
  -- entries finished while these were pending may linger after them (see tidy): trim them now
  for stream in pairs(touched) do tidy(stream, group, {}, now) end
  emit()
  return n

end

-- The start of a running task that op fetch did not hand out (a plain XREADGROUP did) is its entry's delivery
-- time in the PEL, now - idle: readers (get, live_state, running) take it from there while P:q has no ' <ms>'.
-- A renewal resets that idle time, so before it the start goes into P:q: once per task that outlives a lease
-- keeper's beat, instead of an HSET (and its HDEL's share) for every task a busy worker fetched (issue 16).
-- Only where P:q still names this entry without a start (op fetch wrote one; a released task has a new entry).
local function keep_start(stream, prio, id, at)
  local entry = redis.call('XRANGE', stream, id, id)[1]
  local uuid = entry and fields_ud(entry[2])
  if not uuid or uuid == '' then return end
  local where = prio .. ' ' .. id
  if redis.call('HGET', P .. ':q', uuid) == where then
    redis.call('HSET', P .. ':q', uuid, where .. ' ' .. string.format('%d', at))
  end
end

function OPS.renew(ARGV)
  local group, consumer = ARGV[2], ARGV[3]
  local now = redis.call('EXISTS', P .. ':q') == 1 and ms_now()  -- no P:q: records elsewhere, no start kept
  local wanted = {}
  for i = 4, #ARGV, 2 do
    local ids = wanted[ARGV[i]]
    if not ids then ids = {}; wanted[ARGV[i]] = ids end
    ids[ARGV[i + 1]] = true
  end
  local held = {}
  for prio, ids in pairs(wanted) do
    local stream = P .. ':s:' .. prio
    local own = {}
    for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 100000, consumer)) do
      if ids[p[1]] then
        own[#own + 1] = p[1]
        if now then keep_start(stream, prio, p[1], now - p[3]) end
      end
    end
    if #own > 0 then
      -- JUSTID: resets the idle time without counting a delivery
      for j = 1, #own, 1000 do
        local args = {stream, group, consumer, 0}
        for k = j, math.min(j + 999, #own) do args[#args + 1] = own[k] end
        args[#args + 1] = 'JUSTID'
        redis.call('XCLAIM', unpack(args))
      end
      for _, id in ipairs(own) do
        held[#held + 1] = prio
        held[#held + 1] = id
      end
    end
  end
  return held

end

function OPS.get(ARGV)
  local fields = get(ARGV[2], ARGV[3])
  return fields

end

function OPS.watch(ARGV)
  local fields, final = get(ARGV[2], ARGV[3])
  if fields and not final then redis.call('SADD', P .. ':wait', ARGV[3]) end
  return fields

end

function OPS.trim(ARGV)
  local cutoff_ms = tonumber(ARGV[2]) - tonumber(ARGV[3])
  local cutoff = string.format('%.0f', cutoff_ms)
  local n = 0
  for _, name in ipairs(redis.call('SMEMBERS', P .. ':x:names')) do
    local key = P .. ':x:n:' .. name
    n = n + trim_index(key, cutoff, 5000)
    for status in pairs(FINAL) do n = n + trim_index(P .. ':x:f:' .. status .. ':' .. name, cutoff, 5000) end
    if redis.call('ZCARD', key) == 0 then redis.call('SREM', P .. ':x:names', name) end
  end
  -- throughput minutes older than result_ttl
  local old = {}
  for _, field in ipairs(redis.call('HKEYS', P .. ':tp')) do
    local minute = tonumber(string.match(field, '^(%d+) '))
    if not minute or minute * 1000 < cutoff_ms then old[#old + 1] = field end
  end
  if #old > 0 then chunked('HDEL', P .. ':tp', old, 1) end
  trim_events()  -- events: keep the entries that hold the last EV_KEEP events (at least)
  return n

end

function OPS.list(ARGV)
  local group, nprios, status, name = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
  local cmin, top, tie, cmax = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
  local limit, budget, worker, err = tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12], ARGV[13]
  local fmin, fmax = tonumber(ARGV[14]), tonumber(ARGV[15])
  local rows = {}
  local function push(uuid, sc, kind, data, consumer, since)
    local n = #rows
    rows[n + 1] = uuid; rows[n + 2] = sc; rows[n + 3] = kind; rows[n + 4] = data
    rows[n + 5] = consumer or ''; rows[n + 6] = since or ''
  end
  -- before the cursor: score below top, or equal to it with a smaller uuid (when tie is set)
  local tops = tie ~= '' and tonumber(top)
  local function after_cursor(sc, uuid)
    if not tops then return true end
    local x = tonumber(sc)
    return x < tops or (x == tops and uuid < tie)
  end
  if status == 'process' then
    if err ~= '' or fmin or fmax then return {rows, ''} end
    local inrange = bounds(cmin, cmax)
    local found = {}
    for _, t in ipairs(running(group, nprios, name)) do
      if inrange(t[1]) and after_cursor(t[1], t[2]) and worker_matches(t[4], worker) then found[#found + 1] = t end
    end
    table.sort(found, function(a, b)
      local x, y = tonumber(a[1]), tonumber(b[1])
      return x > y or (x == y and a[2] > b[2])
    end)
    for j = 1, math.min(limit, #found) do
      local t = found[j]
      push(t[2], t[1], 'P', t[3], t[4], t[5])
    end
    return {rows, ''}
  end
  -- newest first over the filter's zsets (one per task name), merged
  local its = {}
  for _, key in ipairs((xkeys(name, status))) do its[#its + 1] = {key = key, buf = {}, pos = 1, s = top, u = tie} end
  local function head(it)
    while it.pos > #it.buf do
      if it.done then return nil end
      local n, buf = 64, {}
      while true do
        local r = redis.call('ZRANGE', it.key, it.s, cmin, 'BYSCORE', 'REV', 'LIMIT', 0, n, 'WITHSCORES')
        local s = it.u ~= '' and tonumber(it.s)
        for j = 1, #r, 2 do
          if not s or tonumber(r[j + 1]) < s or r[j] < it.u then
            buf[#buf + 1] = r[j + 1]
            buf[#buf + 1] = r[j]
          end
        end
        if #r < 2 * n then it.done = true; break end
        if #buf > 0 then break end
        n = n * 4  -- a run of equal scores longer than the chunk
      end
      it.buf, it.pos = buf, 1
      if #buf > 0 then it.s, it.u = buf[#buf - 1], buf[#buf] end
    end
    return it.buf[it.pos], it.buf[it.pos + 1]
  end
  local examined, ls, lm = 0, nil, nil
  local t = redis.call('TIME')
  local started = tonumber(t[1]) * 1000000 + tonumber(t[2])
  while #rows < limit * 6 do
    if examined % 8 == 7 and budget > examined then  -- and at most LIST_US of Redis time per call
      t = redis.call('TIME')
      if tonumber(t[1]) * 1000000 + tonumber(t[2]) - started >= LIST_US then budget = examined end
    end
    local best, bs, bm = nil, nil, nil
    for _, it in ipairs(its) do
      local sc, m = head(it)
      if sc and (not best or tonumber(sc) > tonumber(bs) or (tonumber(sc) == tonumber(bs) and m > bm)) then
        best, bs, bm = it, sc, m
      end
    end
    if not best then return {rows, ''} end
    if examined >= budget then  -- go on after the last one examined; with how far that is into the window
      local searched, total = 0, 0
      for _, it in ipairs(its) do
        searched = searched + redis.call('ZCOUNT', it.key, '(' .. ls, cmax)
        for _, u in ipairs(redis.call('ZRANGE', it.key, ls, ls, 'BYSCORE')) do  -- ties: those examined
          if u >= lm then searched = searched + 1 end
        end
        total = total + redis.call('ZCOUNT', it.key, cmin, cmax)
      end
      return {rows, {ls, lm, searched, total, examined}}
    end
    examined, ls, lm = examined + 1, bs, bm
    best.pos = best.pos + 2
    local r = redis.call('GET', record(bm))
    if r then
      local ok = status == '' or rfield(r, 2) == status
      ok = ok and (worker == '' or worker_matches(rfield(r, 5), worker))
      ok = ok and (err == '' or string.find(string.lower(rfield(r, 6)), err, 1, true) ~= nil)
      if ok and (fmin or fmax) then
        local f = tonumber(rfield(r, 3)) or 0
        ok = (not fmin or f >= fmin) and (not fmax or f < fmax)
      end
      if ok then push(bm, bs, 'R', r) end
    elseif not FINAL[status] and err == '' and not fmin and not fmax then
      local kind, blob, consumer, since = live_state(group, bm)
      if kind and (status == '' or (status == 'new') == (kind == 'N'))
          and (worker == '' or (kind == 'P' and worker_matches(consumer, worker))) then
        push(bm, bs, kind, blob, consumer, since)
      end
    end
  end
  return {rows, 'limit'}

end

function OPS.count(ARGV)
  local group, nprios, name, cmin, cmax = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
  local cutoff = string.format('%.0f', tonumber(ARGV[7]) - tonumber(ARGV[8]))
  local keys, names = xkeys(name, '')
  local all, counts = 0, {}
  for j, key in ipairs(keys) do
    trim_index(key, cutoff, 5000)
    all = all + redis.call('ZCOUNT', key, cmin, cmax)
    for status in pairs(RARE) do
      local fkey = P .. ':x:f:' .. status .. ':' .. names[j]
      trim_index(fkey, cutoff, 5000)
      counts[status] = (counts[status] or 0) + redis.call('ZCOUNT', fkey, cmin, cmax)
    end
  end
  local inrange = bounds(cmin, cmax)
  local process = 0
  for _, t in ipairs(running(group, nprios, name)) do
    if inrange(t[1]) then process = process + 1 end
  end
  -- queued or running (P:q) among them: by walking whichever is smaller, the backlog or the window
  local open = 0
  local backlog = redis.call('HLEN', P .. ':q')
  if backlog > 0 and backlog * #keys <= all then
    local cursor = '0'
    repeat
      local res = redis.call('HSCAN', P .. ':q', cursor, 'COUNT', 1000)
      cursor = res[1]
      for j = 1, #res[2], 2 do
        for _, key in ipairs(keys) do
          local sc = redis.call('ZSCORE', key, res[2][j])
          if sc then
            if inrange(sc) then open = open + 1 end
            break
          end
        end
      end
    until cursor == '0'
  elseif backlog > 0 then
    for _, key in ipairs(keys) do
      for _, uuid in ipairs(redis.call('ZRANGE', key, cmin, cmax, 'BYSCORE')) do
        open = open + redis.call('HEXISTS', P .. ':q', uuid)
      end
    end
  end
  local error_, cancel = counts.error or 0, counts.cancel or 0
  return {math.max(0, open - process), process, math.max(0, all - open - error_ - cancel), error_, cancel}

end

function OPS.depth(ARGV)
  local group, nprios, now = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local waiting, consumers = {}, {}
  for prio = 0, nprios - 1 do
    local stream = P .. ':s:' .. prio
    local w = stream_waiting(stream, group)
    if w > 0 then waiting[prio] = w end
    local pel = redis.pcall('XPENDING', stream, group)
    if type(pel) == 'table' and not pel.err and type(pel[4]) == 'table' then
      for _, c in ipairs(pel[4]) do consumers[c[1]] = (consumers[c[1]] or 0) + tonumber(c[2]) end
    end
  end
  local delayed = redis.call('ZCARD', P .. ':d')
  if delayed > 0 then  -- due delayed envelopes wait at their priority (the next fetch promotes them)
    for _, uuid in ipairs(redis.call('ZRANGE', P .. ':d', '-inf', now, 'BYSCORE', 'LIMIT', 0, 10000)) do
      local m = redis.call('HGET', P .. ':dm', uuid)
      if m then
        local prio = tonumber((split_delayed(m)))
        waiting[prio] = (waiting[prio] or 0) + 1
        delayed = delayed - 1
      end
    end
  end
  local wflat, cflat = {}, {}
  for prio, n in pairs(waiting) do wflat[#wflat + 1] = prio; wflat[#wflat + 1] = n end
  for c, n in pairs(consumers) do cflat[#cflat + 1] = c; cflat[#cflat + 1] = n end
  return {wflat, cflat, delayed, redis.call('XLEN', P .. ':dlq')}

end

function OPS.cancel(ARGV)
  local group, uuid, reason, now, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local nprios, channel = tonumber(ARGV[7]), ARGV[8]
  if rec and redis.call('EXISTS', record(uuid)) == 1 then return {'finished'} end
  local m = redis.call('HGET', P .. ':dm', uuid)
  if m then  -- delayed: never reached a stream
    redis.call('ZREM', P .. ':d', uuid)
    redis.call('HDEL', P .. ':dm', uuid)
    unown(uuid, true)
    local _, blob = split_delayed(m)
    if rec then final(uuid, blob, 'cancel', reason, now, ttl) end
    emit()
    return {'queued', blob}
  end
  local prio, id, entry
  if rec then
    local where = redis.call('HGET', P .. ':q', uuid)
    if where then prio, id = string.match(where, '^(%S+) (%S+)') end
    if id then entry = redis.call('XRANGE', P .. ':s:' .. prio, id, id)[1] end
  else
    -- no P:q without our records: look through the streams (a foreign storage's cancel is rare)
    for p = 0, nprios - 1 do
      local cursor = '-'
      while not entry do
        local chunk = redis.call('XRANGE', P .. ':s:' .. p, cursor, '+', 'COUNT', 1000)
        for _, e in ipairs(chunk) do
          if fields_ud(e[2]) == uuid then prio, id, entry = p, e[1], e; break end
        end
        if #chunk < 1000 then break end
        cursor = '(' .. chunk[#chunk][1]
      end
      if entry then break end
    end
  end
  if not entry then return {'unknown'} end
  local stream = P .. ':s:' .. prio
  local running, pending = held_by_worker(stream, group, id)
  if running then
    redis.call('HSET', P .. ':cx', uuid, reason)
    redis.call('PEXPIRE', P .. ':cx', ttl)
    redis.call('PUBLISH', channel, cmsgpack.pack({uuid, reason}))
    return {'running'}
  end
  if pending then redis.call('XACK', stream, group, id) end  -- parked for a last attempt: not running
  redis.call('XDEL', stream, id)
  unown(uuid, true)
  local _, blob = fields_ud(entry[2])
  if rec then final(uuid, blob, 'cancel', reason, now, ttl) end
  emit()
  return {'queued', blob}

end

function OPS.requeue(ARGV)
  local limit = tonumber(ARGV[2])
  local entries = {}
  if #ARGV > 2 then
    for i = 3, #ARGV do
      local e = redis.call('XRANGE', P .. ':dlq', ARGV[i], ARGV[i])[1]
      if e then entries[#entries + 1] = e end
    end
  else
    entries = redis.call('XRANGE', P .. ':dlq', '-', '+', 'COUNT', limit)
  end
  local n = 0
  for _, e in ipairs(entries) do
    local f = {}
    for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
    local uuid, blob, prio = f.u or '', f.d or '', f.prio or '0'
    local id = redis.call('XADD', P .. ':s:' .. prio, '*', 'u', uuid, 'd', blob)
    if rec and uuid ~= '' then
      redis.call('HSET', P .. ':q', uuid, prio .. ' ' .. id)
      redis.call('DEL', record(uuid))
      local name = env_name(blob)
      redis.call('ZREM', P .. ':x:f:error:' .. name, uuid)
      local ev = #EV
      EV[ev + 1] = uuid; EV[ev + 2] = 'new'; EV[ev + 3] = name; EV[ev + 4] = ''
    end
    redis.call('XDEL', P .. ':dlq', e[1])
    n = n + 1
  end
  emit()
  return n

end

function OPS.purgedead(ARGV)
  if #ARGV > 1 then
    local ids = {}
    for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
    local n = 0
    for j = 1, #ids, 1000 do
      n = n + redis.call('XDEL', P .. ':dlq', unpack(ids, j, math.min(j + 999, #ids)))
    end
    return n
  end
  local n = redis.call('XLEN', P .. ':dlq')
  redis.call('DEL', P .. ':dlq')
  return n

end

function OPS.purge(ARGV)
  local group, now, ttl, limit = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
  local prio, cursor = ARGV[7], ARGV[8]
  local out = {0, 0, cursor}
  if prio == 'd' then
    local uuids = redis.call('ZRANGE', P .. ':d', 0, limit - 1)
    for _, uuid in ipairs(uuids) do
      local m = redis.call('HGET', P .. ':dm', uuid)
      local blob = m and select(2, split_delayed(m)) or ''
      unown(uuid, true)
      if rec then final(uuid, blob, 'cancel', 'purged', now, ttl) else out[#out + 1] = blob end
    end
    chunked('ZREM', P .. ':d', uuids, 1)
    chunked('HDEL', P .. ':dm', uuids, 1)
    out[1], out[2] = #uuids, #uuids
  else
    local stream = P .. ':s:' .. prio
    local chunk = redis.call('XRANGE', stream, cursor == '-' and '-' or '(' .. cursor, '+', 'COUNT', limit)
    if #chunk > 0 then
      -- who holds what in this range: pending entries of workers stay, parked last attempts go
      local holder = {}
      local pel = redis.pcall('XPENDING', stream, group, chunk[1][1], chunk[#chunk][1], #chunk)
      if type(pel) == 'table' and not pel.err then
        for _, x in ipairs(pel) do holder[x[1]] = x[2] end
      end
      local gone, parked = {}, {}
      -- not pending but delivered already = finished, waiting to be trimmed (see tidy): not to purge
      local delivered = delivered_by(stream, group)
      for _, e in ipairs(chunk) do
        local h = holder[e[1]]
        if h and string.find(h, ':last', 1, true) or not h and not delivered(e[1]) then
          local uuid, blob = fields_ud(e[2])
          if uuid ~= '' then unown(uuid, true) end
          gone[#gone + 1] = e[1]
          if h then parked[#parked + 1] = e[1] end
          if not rec then
            out[#out + 1] = blob
          elseif uuid ~= '' then
            final(uuid, blob, 'cancel', 'purged', now, ttl)
          end
        end
      end
      if #parked > 0 then chunked('XACK', stream, parked, 1, group) end
      if #gone > 0 then chunked('XDEL', stream, gone, 1) end
      out[1], out[2], out[3] = #gone, #chunk, chunk[#chunk][1]
    end
  end
  emit()
  return out

end

function OPS.acquire(ARGV)
  local key, limit, token, ttl = P .. ':sem:' .. ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
  -- the server's clock: every worker of the fleet measures slot expiry alike
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, token) and redis.call('ZCARD', key) >= limit then return 0 end
  redis.call('ZADD', key, now + ttl, token)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, last[2])
  return 1

end

function OPS.unslot(ARGV)
  return redis.call('ZREM', P .. ':sem:' .. ARGV[2], ARGV[3])

end

function OPS.stats(ARGV)
  local group, nprios, now = ARGV[2], tonumber(ARGV[3]), ARGV[4]
  local waiting, inflight = 0, 0
  for prio = 0, nprios - 1 do
    local stream = P .. ':s:' .. prio
    local w, f = stream_waiting(stream, group)
    waiting, inflight = waiting + w, inflight + f
  end
  local delayed = redis.call('ZCARD', P .. ':d')
  local due = 0
  if delayed > 0 then due = redis.call('ZCOUNT', P .. ':d', '-inf', now) end
  return {waiting + due, inflight, delayed - due, redis.call('XLEN', P .. ':dlq')}
end

-- One call: KEYS = {P}, ARGV = {op, rec, args...}. The op's function gets ARGV without rec, as the op code above
-- reads it (ARGV[1] = op, ARGV[2] = its first argument). EV is reset here: an op that failed half-way must not
-- leave its events to the next call, which in a function library shares these upvalues.
local function run(keys, argv)
  P, EV = keys[1], {}
  rec = table.remove(argv, 2) == '1'
  local f = OPS[argv[1]]
  if not f then return redis.error_reply('qtasks_fast.lua: unknown op ' .. tostring(argv[1])) end
  return f(argv)
end
-- The last line is not in this file: script.py adds it at load time, for one of the two ways Redis runs it.
-- As a function library (Redis >= 7, FUNCTION LOAD + FCALL; script.py also puts the '#!lua name=qtf_<sha8>'
-- line on top): this top level runs once, at load, and each FCALL runs only run() and its op, not the
-- definitions of ~60 local functions and an elseif chain that EVALSHA re-runs per call (~6-14 µs of Redis
-- time per call, benchmarks/RESULTS.md, issue 16). It registers run twice: qtf_<sha8> with no flags, and
-- qtf_<sha8>_ro with 'no-writes' for the read-only ops (get, stats, depth), which Redis then also runs while it
-- is out of memory, as it ran them as EVALSHA scripts. As an EVALSHA script (Redis 6, or a server without the
-- FUNCTION command): 'return run(KEYS, ARGV)'.
