#!lua
-- Appends dispatches to their streams and publishes them, atomically, so
-- that stored order is publish order (docs/protocol.md section 6).
--
-- KEYS[1]     the run key (proto.RunKey: of the call's partition on a
--             Redis Cluster, where every key is in its slot)
-- KEYS[2..]   per recorded target, in order: its stream, its meta hash
-- ARGV[1]     history window, ms
-- ARGV[2]     meta TTL, s
-- ARGV[3]     a fresh random epoch seed ([0-9a-z]): new epochs are seed..index
-- ARGV[4]     D, the number of dispatches
-- ARGV[5]     '1' to check the run against the server's own run id and
--             replication id (on a Redis Cluster), 'r' against its
--             replication id only (on one Redis)
-- then per dispatch, 7 values:
--   channel, head (its JSON body without the closing brace), event, args,
--   N (the targets it records: 0 = transient, 1 for the broadcast stream),
--   kind ('u' users, 'b' broadcast),
--   except (the connections it leaves out, a JSON array, stored in each
--   entry as field 'x'; '' for none: the entry has no 'x')
--   and for kind 'u', N more: each user id as a JSON string (the pos key)
-- or, for a dispatch to users published on each user's own channel
-- (FANOUT_MODE=per_user), the same 7 values where
--   channel is the body's tail after the user id, head its start up to the
--   user id, N the number of users, kind 'p' (recorded) or 't' (transient),
--   and N pairs follow: each user id as a JSON string, and its channel.
--   Each user's body is head..id..tail, then its position for 'p'.
--   Kinds 'P' and 'T' are 'p' and 't' published with SPUBLISH (sharded
--   pub/sub, on a Redis Cluster: the channels are in the keys' slot).
-- Returns the positions assigned, in target order ('' for a target a
-- failed unit did not record, below), then the number of
-- PUBLISHes on a shared channel that no subscriber received (see
-- SplitResult). A PUBLISH on a user's channel that no one hears is not
-- counted: the user is offline, which is normal.
local run = redis.call('GET', KEYS[1])
local check = ARGV[5]
if check == 'r' and run then
  -- One Redis: a restart drops every connection, and OnConnect records
  -- the new run on the next one; a promotion (a failover, a failback)
  -- keeps connections made while the server was a replica, or idle
  -- through its time as one, but changes its replication id, the run's
  -- second half. A mismatch is checked in full below.
  local half = string.sub(run, 17)
  if half == '' or not string.find(redis.call('INFO', 'replication'), 'master_replid:' .. half, 1, true) then check = '1' end
end
if check == '1' or not run then
  -- On a cluster, a client's connection may date from before its node
  -- became a master (a failover), or from before it restarted with its
  -- replication id loaded from disk while OnConnect could not write
  -- (it served no slot yet), so the run its OnConnect recorded is not to
  -- be trusted; and with no run recorded (a new or flushed store)
  -- the server's own is the one OnConnect will record, so that a
  -- connection opened later does not change it again. The run as
  -- streams.Run makes it: 16 characters of the run id (new at every
  -- start), 16 of the replication id (new at every promotion to master,
  -- a failback included). Two INFO calls: Redis 6 takes one section.
  local id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
  local repl = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
  local live = id and repl and (string.sub(id, 1, 16) .. string.sub(repl, 1, 16))
  if live and run ~= live then
    run = live
    redis.call('SET', KEYS[1], run)
  end
end
if not run then
  -- INFO without the ids: a run of the script's own, so that every meta
  -- of an older run starts a new epoch.
  run = ARGV[3]
  redis.call('SET', KEYS[1], run)
end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local window = tonumber(ARGV[1])
local metattl = tonumber(ARGV[2])
local minid = string.format('%d-0', now - window)
local nowstr = string.format('%d', now)
local expireEvery = 10000 -- ms between settings of a stream's TTLs
local k = 2
local out = {}
-- Whether the unit running has appended to a stream or published yet:
-- if it fails after, some of it may have been delivered.
local wrote = false

-- record appends one event to the stream at KEYS[k] (meta at KEYS[k+1]),
-- moves k to the next target and returns the event's position.
local function record(ev, args, except)
  local sk, mk = KEYS[k], KEYS[k + 1]
  local m = redis.call('HMGET', mk, 'e', 's', 't', 'r', 'x')
  local ep, s, ms, x = m[1], tonumber(m[2]), tonumber(m[3]), tonumber(m[5])
  if not ep or not s or not ms or m[4] ~= run then
    -- The store lost this stream, or it was written on another run of
    -- Redis (a restart, a failover): a new epoch, so no position of the
    -- old one is ever taken for one of the new.
    ep = ARGV[3] .. string.format('%x', k)
    s, ms, x = 0, 0, nil
    redis.call('DEL', sk)
  end
  s = s + 1
  -- Numbers go to redis.call as strings made here: Redis would format
  -- each with %.17g, several times the cost.
  local ss, mss = string.format('%d', s), nowstr
  if now > ms then ms = now else mss = string.format('%d', ms) end
  local id = mss .. '-' .. ss
  local p = ep .. '.' .. id
  if except == '' then
    redis.call('XADD', sk, 'MINID', '~', minid, id, 'e', ev, 'a', args)
  else
    redis.call('XADD', sk, 'MINID', '~', minid, id, 'e', ev, 'a', args, 'x', except)
  end
  -- In the stream: its position is returned even if the unit fails
  -- after, since the user has the event (a gap filled, a resume).
  out[#out + 1] = p
  wrote = true
  if not x or s == 1 or now - x >= expireEvery or now < x then
    -- The stream's TTL, set at x, is window + expireEvery: it outlives
    -- every event written within expireEvery of x by a window, so the
    -- TTLs are set again only that often, not on every event.
    redis.call('PEXPIRE', sk, window + expireEvery)
    redis.call('HSET', mk, 'e', ep, 's', ss, 't', mss, 'r', run, 'x', nowstr)
    redis.call('EXPIRE', mk, metattl)
  else
    redis.call('HSET', mk, 's', ss, 't', mss)
  end
  k = k + 2
  return p
end

local unheard = 0

-- publish records and publishes the unit whose values start at ARGV[a],
-- of n targets and kind kind, its keys at KEYS[k].
local function publish(a, n, kind)
  local channel, head, ev, args, except = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 6]
  a = a + 7
  local sharded = kind == 'P' or kind == 'T'
  if sharded then kind = string.lower(kind) end
  if kind == 'p' or kind == 't' then
    -- One message per user, on that user's channel, naming that user
    -- only. A user offline everywhere has no subscriber: that is normal.
    for _ = 1, n do
      local uid, uch = ARGV[a], ARGV[a + 1]
      a = a + 2
      local body = head .. uid .. channel
      if kind == 'p' then
        body = body .. ',"pos":{' .. uid .. ':"' .. record(ev, args, except) .. '"}}'
      else
        body = body .. '}'
      end
      redis.call(sharded and 'SPUBLISH' or 'PUBLISH', uch, body)
      wrote = true
    end
  else
    local pos = {}
    for j = 1, n do
      local p = record(ev, args, except)
      if kind == 'b' then
        pos[1] = p
      else
        pos[j] = ARGV[a] .. ':"' .. p .. '"'
        a = a + 1
      end
    end
    local body
    if n == 0 then
      body = head .. '}'
    elseif kind == 'b' then
      body = head .. ',"bpos":"' .. pos[1] .. '"}'
    else
      body = head .. ',"pos":{' .. table.concat(pos, ',') .. '}}'
    end
    if redis.call('PUBLISH', channel, body) == 0 then
      unheard = unheard + 1
    end
  end
end

-- Each unit runs under pcall: an error Redis raises in one (WRONGTYPE on
-- a key something else overwrote) fails that unit alone, not the units
-- after it, which handlers-svc may have merged in from other callers.
-- Where each unit's keys and values start is worked out from its kind and
-- N before it runs, so that a unit failing half way does not shift the
-- next. A failed unit's targets keep the positions of the events it had
-- appended to their streams before it failed (those users have it: their
-- sockets get it by a gap filled at their next event, or a resume, if
-- it was not published), and get '' for the others (positions are never
-- empty); the reply gets, after every position and before the count,
-- one element per failed unit: '!', its index (from 1), 'w' if it had
-- appended to a stream or published before it failed (so it may have been
-- delivered in part) or '-' if not, a space and Redis's error.
local failed = {}
local a = 6
for i = 1, tonumber(ARGV[4]) do
  local n, kind = tonumber(ARGV[a + 4]), ARGV[a + 5]
  local targets, values = n, 7 + n -- 'u': N keyed targets, N user ids
  if kind == 'b' then
    values = 7
  elseif kind == 'p' or kind == 'P' then
    values = 7 + 2 * n
  elseif kind == 't' or kind == 'T' then
    targets, values = 0, 7 + 2 * n
  end
  local o, nextk = #out, k + 2 * targets
  wrote = false
  local ok, err = pcall(publish, a, n, kind)
  if not ok then
    for j = #out + 1, o + targets do out[j] = '' end
    if type(err) == 'table' then err = err.err end -- as some Redis versions raise it
    failed[#failed + 1] = '!' .. i .. (wrote and 'w ' or '- ') .. tostring(err)
  end
  k, a = nextk, a + values
end
for _, f in ipairs(failed) do out[#out + 1] = f end
out[#out + 1] = tostring(unheard)
return out
